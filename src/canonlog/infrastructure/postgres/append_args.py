"""What the append function is sent: one array per request field and per event field,
and the lower bounds this process has learned for its index scans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from canonlog.domain.events import AppendRequest, WriterGrant, expected_version_code
from canonlog.infrastructure.postgres.rows import Row


class AppendHints:
    """What this process has seen recorded, sent with each append as lower bounds.

    The append function finds a ledger's head and a stream's version with a
    backward index scan, which reads every matching entry of the index page it
    starts on; a lower bound known to be reached lets it read a few. A bound that
    is wrong (another writer appended since, or an entry was forgotten) costs only
    the unbounded scan, never a wrong answer.
    """

    def __init__(self, max_streams: int = 100_000) -> None:
        self._max_streams = max_streams
        self._heads: dict[str, int] = {}
        self._versions: dict[tuple[str, str], int] = {}

    def head(self, ledger_id: str) -> int | None:
        return self._heads.get(ledger_id)

    def versions(self, ledger_id: str, requests: Sequence[AppendRequest]) -> list[int | None]:
        known = self._versions
        return [known.get((ledger_id, request.stream_id)) for request in requests]

    def learn(self, ledger_id: str, requests: Sequence[AppendRequest], row: Row) -> None:
        """Remembers the head and the stream versions an append result row reports."""
        hashes = row["hashes"]
        if not hashes:
            return
        self._heads[ledger_id] = row["first_sequence"] + len(hashes) - 1
        known = self._versions
        if len(known) >= self._max_streams:
            known.clear()
        for request, version in zip(requests, row["first_versions"], strict=True):
            if version is not None:
                known[ledger_id, request.stream_id] = version + len(request.events) - 1


def append_args(
    grant: WriterGrant, requests: Sequence[AppendRequest], hints: AppendHints
) -> tuple[Any, ...]:
    """Returns the arguments of the append function for a batch, in its parameter order:
    the grant and known head, then one array per request field, then per event field."""
    contexts = [request.context for request in requests]
    events = [event for request in requests for event in request.events]
    ledger_id = grant.ledger_id
    return (
        ledger_id, grant.writer_id, grant.epoch, hints.head(ledger_id),
        [request.stream_id for request in requests],
        [expected_version_code(request.expected_version) for request in requests],
        hints.versions(ledger_id, requests),
        [len(request.events) for request in requests],
        [context.task_id for context in contexts],
        [context.execution_id for context in contexts],
        [context.correlation_id for context in contexts],
        [context.causation_id for context in contexts],
        [context.agent_id for context in contexts],
        [context.writer_time for context in contexts],
        [event.event_id for event in events],
        [event.event_type for event in events],
        [event.payload for event in events],
        [event.metadata for event in events],
        [event.signing_key_id for event in events],
        [event.signature for event in events],
    )
