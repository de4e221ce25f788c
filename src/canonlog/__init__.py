"""canonlog: a tamper-evident, append-only event log on PostgreSQL with a single writer.

    import canonlog

    async with canonlog.open() as log:                   # embedded PostgreSQL by default
        result = await log.append("order-1", [canonlog.event("order_placed", {"amount": 120})],
                                  expected_version=canonlog.StreamState.NO_STREAM)
"""

from __future__ import annotations

from canonlog.application.client import LedgerClient
from canonlog.application.ports import AppendResult, EventStore
from canonlog.domain.errors import (
    AppendOutcomeUnknown,
    AppendTimeout,
    CanonlogError,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidEvent,
    StaleWriter,
    SystemHalted,
    WriterInconsistency,
    WriterLeaseLost,
    WriterNotVerified,
    WriterStopped,
    WriterTaskFailed,
)
from canonlog.domain.events import NewEvent, RecordedEvent, StreamState
from canonlog.infrastructure.bootstrap import open_ledger as open
from canonlog.infrastructure.settings import Settings

#: Builds a validated event: canonlog.event("order_placed", {"amount": 120}).
event = NewEvent.create

__all__ = [
    "AppendOutcomeUnknown",
    "AppendResult",
    "AppendTimeout",
    "CanonlogError",
    "ConcurrencyConflict",
    "EventStore",
    "IdempotencyConflict",
    "InvalidEvent",
    "LedgerClient",
    "NewEvent",
    "RecordedEvent",
    "Settings",
    "StaleWriter",
    "StreamState",
    "SystemHalted",
    "WriterInconsistency",
    "WriterLeaseLost",
    "WriterNotVerified",
    "WriterStopped",
    "WriterTaskFailed",
    "event",
    "open",
]
