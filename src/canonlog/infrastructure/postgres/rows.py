"""Row mapping: result rows of the named queries and the append function, as domain objects.

Driver-neutral: a row is anything indexable by column name (an asyncpg Record,
a psycopg dict row).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from typing import Any, Protocol

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.ceremony import Approval, Ceremony
from canonlog.domain.errors import (
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidEvent,
    StorageError,
)
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
    AppendRequest,
    Head,
    LedgerState,
    RecordedEvent,
    RegisteredKey,
    WriterGrant,
)
from canonlog.domain.governance import PolicyInForce, policy_from_document


class Row(Protocol):
    """A result row indexable by column name: an asyncpg Record or a psycopg dict row."""

    def __getitem__(self, key: str, /) -> Any: ...


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


def head_from_row(ledger_id: str, row: Row | None) -> Head:
    """Builds the Head from the ``head`` query's row, or the genesis head when there is none."""
    if row is None:
        return Head(ledger_id, 0, GENESIS_HASH)
    return Head(ledger_id, row["seq"], bytes(row["hash"]))


def ledger_state_from_row(row: Row) -> LedgerState:
    """Builds a LedgerState from a row of canonlog.ledgers."""
    return LedgerState(
        row["ledger_id"], row["writer_id"], row["epoch"], row["halted"], row["halt_reason"]
    )


def key_from_row(row: Row) -> RegisteredKey:
    """Builds a RegisteredKey from a row of canonlog.keys."""
    return RegisteredKey(
        ledger_id=row["ledger_id"], key_id=row["key_id"], purpose=row["purpose"],
        owner_id=row["owner_id"], public_key=bytes(row["public_key"]),
        added_seq=row["added_seq"], revoked_seq=row["revoked_seq"],
    )


def ceremonies_from_rows(rows: Sequence[Row]) -> list[Ceremony]:
    """Builds Ceremonies from the rows of the ``ceremonies`` query, one per approval."""
    found: dict[int, Ceremony] = {}
    approvals: dict[int, list[Approval]] = {}
    for row in rows:
        proposal_id = row["proposal_id"]
        if proposal_id not in found:
            found[proposal_id] = Ceremony(
                ledger_id=row["ledger_id"], proposal_id=proposal_id, kind=row["kind"],
                status=row["status"], writer_id=row["writer_id"], epoch=row["epoch"],
                target_writer_id=row["target_writer_id"], head_sequence=row["head_seq"],
                head_hash=_optional_bytes(row["head_hash"]), halt_sequence=row["halt_seq"],
                halt_hash=_optional_bytes(row["halt_hash"]), proposed_by=row["proposed_by"],
                proposed_seq=row["proposed_seq"], proposed_at=row["proposed_at"],
                closed_seq=row["closed_seq"],
                policy=(policy_from_document(json.loads(row["policy"]))
                        if row["policy"] is not None else None),
                policy_sequence=row["policy_seq"],
            )
            approvals[proposal_id] = []
        if row["key_id"] is not None:
            approvals[proposal_id].append(Approval(
                key_id=row["key_id"], owner_id=row["owner_id"],
                signature=bytes(row["signature"]), approved_by=row["approved_by"],
                approved_seq=row["approved_seq"],
                public_key=_optional_bytes(row["public_key"]),
            ))
    return [replace(c, approvals=tuple(approvals[n])) for n, c in found.items()]


def policies_from_rows(rows: Sequence[Row]) -> list[PolicyInForce]:
    """Builds the policies of the ``policies`` query, oldest first."""
    return [PolicyInForce(row["policy_seq"], policy_from_document(json.loads(row["policy"])))
            for row in rows]


def append_outcomes(
    grant: WriterGrant, requests: Sequence[AppendRequest], row: Row
) -> list[AppendOutcome]:
    """Turns the result row of canonlog.append_v2 into one outcome per request.

    Recorded events are built from the request and the row (sequences, ids,
    versions, hashes); replayed ones from the original rows the function returns.
    """
    statuses = row["outcomes"]
    hashes = row["hashes"] or ()
    originals = iter(row["replayed_events"] or ())
    recorded = _Recorder(grant, row)
    result: list[AppendOutcome] = []
    for index, request in enumerate(requests):
        status = None if statuses is None else statuses[index]
        if status is None:
            result.append(AppendResult(recorded.events(request, row["first_versions"][index])))
        elif status == "replayed":
            events = tuple(event_from_row(original)
                           for original in islice(originals, len(request.events)))
            if len(events) != len(request.events):
                raise StorageError("canonlog.append_v2 returned fewer replayed events than asked")
            result.append(AppendResult(events, replayed=True))
        elif status == "conflict":
            actual = row["conflict_versions"][index]
            result.append(ConcurrencyConflict(
                f"stream {request.stream_id!r} is at version {actual}, "
                f"expected {_describe_expected(request)}",
                stream_id=request.stream_id,
                expected=request.expected_version,
                actual=actual,
            ))
        elif status == "idempotency_conflict":
            result.append(IdempotencyConflict(
                f"execution id {request.context.execution_id!r} was already used "
                "for a different request"
            ))
        elif status == "invalid":
            result.append(InvalidEvent(row["problems"][index]))
        else:
            raise StorageError(f"canonlog.append_v2 returned an unknown status {status!r}")
    if recorded.position != len(hashes) or next(originals, None) is not None:
        raise StorageError("canonlog.append_v2 returned events no request asked for")
    return result


class _Recorder:
    """Builds the recorded events of a result row, request by request, in sequence order."""

    def __init__(self, grant: WriterGrant, row: Row) -> None:
        self._grant = grant
        self._hashes = row["hashes"] or ()
        self._event_ids = row["event_ids"]
        self._first_sequence = row["first_sequence"]
        self._recorded_at = row["recorded_at"]
        self._prev_hash = row["previous_hash"]
        self.position = 0

    def events(self, request: AppendRequest, version: int) -> tuple[RecordedEvent, ...]:
        grant, context, hashes = self._grant, request.context, self._hashes
        recorded = []
        for event in request.events:
            position = self.position
            if position >= len(hashes):
                raise StorageError("canonlog.append_v2 returned fewer events than it recorded")
            hash_ = hashes[position]
            recorded.append(RecordedEvent(
                grant.ledger_id, self._first_sequence + position, self._event_ids[position],
                request.stream_id, version, event.event_type, event.payload, event.metadata,
                context.task_id, context.execution_id, context.correlation_id,
                context.causation_id, context.agent_id, grant.writer_id, grant.epoch,
                context.writer_time, self._recorded_at, HASH_VERSION, self._prev_hash, hash_,
                event.signing_key_id, event.signature,
            ))
            self._prev_hash = hash_
            self.position = position + 1
            version += 1
        return tuple(recorded)


def _describe_expected(request: AppendRequest) -> str:
    expected = request.expected_version
    return expected.value if not isinstance(expected, int) else str(expected)


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
