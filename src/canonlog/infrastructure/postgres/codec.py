"""What both PostgreSQL adapters share: argument arrays, result rows, error translation.

Driver-neutral: rows are anything indexable by column name (asyncpg Records,
psycopg dict rows), and errors arrive as (sqlstate, message, detail).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.errors import (
    ERRORS_BY_SQLSTATE,
    CanonlogError,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidEvent,
    StorageError,
    SystemHalted,
)
from canonlog.domain.events import (
    AppendRequest,
    RecordedEvent,
    RegisteredKey,
    WriterGrant,
    expected_version_code,
)


class Row(Protocol):
    """A result row indexable by column name: an asyncpg Record or a psycopg dict row."""

    def __getitem__(self, key: str, /) -> Any: ...


def load_queries() -> dict[str, str]:
    """Returns the named queries of queries.sql (``-- name: x`` headers)."""
    text = resources.files(__package__).joinpath("queries.sql").read_text("utf-8")
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- name:"):
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.removeprefix("-- name:").strip(), []
        elif name:
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES = load_queries()


def append_args(grant: WriterGrant, requests: Sequence[AppendRequest]) -> tuple[Any, ...]:
    """Returns the arguments of canonlog.append_v1 for a batch, after $1 = ledger."""
    r_stream, r_expected, r_count = [], [], []
    r_task, r_exec, r_corr, r_caus, r_agent, r_wtime = [], [], [], [], [], []
    e_id, e_type, e_payload, e_metadata, e_key, e_signature = [], [], [], [], [], []
    for request in requests:
        context = request.context
        r_stream.append(request.stream_id)
        r_expected.append(expected_version_code(request.expected_version))
        r_count.append(len(request.events))
        r_task.append(context.task_id)
        r_exec.append(context.execution_id)
        r_corr.append(context.correlation_id)
        r_caus.append(context.causation_id)
        r_agent.append(context.agent_id)
        r_wtime.append(context.writer_time)
        for event in request.events:
            e_id.append(event.event_id)
            e_type.append(event.event_type)
            e_payload.append(event.payload)
            e_metadata.append(event.metadata)
            e_key.append(event.signing_key_id)
            e_signature.append(event.signature)
    return (
        grant.ledger_id, grant.writer_id, grant.epoch,
        r_stream, r_expected, r_count, r_task, r_exec, r_corr, r_caus, r_agent, r_wtime,
        e_id, e_type, e_payload, e_metadata, e_key, e_signature,
    )


def append_outcomes(
    grant: WriterGrant, requests: Sequence[AppendRequest], rows: Sequence[Row]
) -> list[AppendOutcome]:
    """Turns the result rows of canonlog.append_v1 into one outcome per request."""
    events: list[list[RecordedEvent]] = [[] for _ in requests]
    outcomes: list[AppendOutcome | None] = [None] * len(requests)
    replayed = [False] * len(requests)
    for row in rows:
        index = row["req"] - 1
        request = requests[index]
        status = row["status"]
        if status in ("ok", "replayed"):
            replayed[index] = status == "replayed"
            position = len(events[index])
            event = request.events[position]
            context = request.context
            events[index].append(RecordedEvent(
                ledger_id=grant.ledger_id,
                sequence=row["seq"],
                event_id=row["event_id"],
                stream_id=request.stream_id,
                stream_version=row["stream_version"],
                event_type=event.event_type,
                payload=event.payload,
                metadata=event.metadata,
                task_id=context.task_id,
                execution_id=context.execution_id,
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                agent_id=context.agent_id,
                writer_id=row["writer_id"],
                epoch=row["epoch"],
                writer_time=row["writer_time"],
                recorded_at=row["recorded_at"],
                hash_version=1,
                prev_hash=bytes(row["prev_hash"]),
                hash=bytes(row["hash"]),
                signing_key_id=row["signing_key_id"],
                signature=_optional_bytes(row["signature"]),
            ))
        elif status == "conflict":
            outcomes[index] = ConcurrencyConflict(
                f"stream {request.stream_id!r} is at version {row['actual_version']}, "
                f"expected {_describe_expected(request)}",
                stream_id=request.stream_id,
                expected=request.expected_version,
                actual=row["actual_version"],
            )
        elif status == "idempotency_conflict":
            outcomes[index] = IdempotencyConflict(
                f"execution id {request.context.execution_id!r} was already used "
                "for a different request"
            )
        elif status == "invalid":
            outcomes[index] = InvalidEvent(row["detail"])
        else:
            raise StorageError(f"canonlog.append_v1 returned an unknown status {status!r}")
    result: list[AppendOutcome] = []
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            if len(events[index]) != len(requests[index].events):
                raise StorageError("canonlog.append_v1 returned a partial request")
            outcome = AppendResult(tuple(events[index]), replayed[index])
        result.append(outcome)
    return result


def _describe_expected(request: AppendRequest) -> str:
    expected = request.expected_version
    return expected.value if not isinstance(expected, int) else str(expected)


def event_from_row(row: Row) -> RecordedEvent:
    """Builds a RecordedEvent from a row of canonlog.events."""
    return RecordedEvent(
        ledger_id=row["ledger_id"],
        sequence=row["seq"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        event_type=row["event_type"],
        payload=bytes(row["payload"]),
        metadata=bytes(row["metadata"]),
        task_id=row["task_id"],
        execution_id=row["execution_id"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        agent_id=row["agent_id"],
        writer_id=row["writer_id"],
        epoch=row["epoch"],
        writer_time=row["writer_time"],
        recorded_at=row["recorded_at"],
        hash_version=row["hash_version"],
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
        signing_key_id=row["signing_key_id"],
        signature=_optional_bytes(row["signature"]),
    )


def key_from_row(row: Row) -> RegisteredKey:
    """Builds a RegisteredKey from a row of canonlog.keys."""
    return RegisteredKey(
        ledger_id=row["ledger_id"], key_id=row["key_id"], purpose=row["purpose"],
        owner_id=row["owner_id"], public_key=bytes(row["public_key"]),
        added_seq=row["added_seq"], revoked_seq=row["revoked_seq"],
    )


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


#: SQLSTATEs of malformed input that PostgreSQL itself raises inside the append
#: path: invalid byte sequence, untranslatable character (U+0000 in JSON),
#: invalid text representation (JSON), string too long, check violation,
#: invalid parameter value.
_INPUT_SQLSTATES = frozenset({"22021", "22P05", "22P02", "22001", "23514", "22023"})


def translate_error(sqlstate: str | None, message: str, detail: str | None) -> CanonlogError:
    """Maps a database error to the canonlog error for the same condition."""
    text = message.removeprefix("canonlog: ")
    if sqlstate == "CL012":
        return SystemHalted(text, reason=detail)
    error_type = ERRORS_BY_SQLSTATE.get(sqlstate or "")
    if error_type is not None:
        return error_type(text)
    if sqlstate in _INPUT_SQLSTATES:
        return InvalidEvent(f"the database refused the input: {text}")
    return StorageError(f"{sqlstate}: {text}" if sqlstate else text)
