"""The in-memory store's state, and what every part of it shares.

A MemoryLedger holds one ledger as the tables of sql/0001_core.sql hold it. The
MemoryStore base class owns the ledgers, stands in for the database's per-ledger
lock and clock, and builds the ledger's own events as append_system_v1 does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import LedgerNotFound, StaleWriter, StorageError, SystemHalted
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
    SYSTEM_STREAM,
    LedgerState,
    RecordedEvent,
    RegisteredKey,
)
from canonlog.domain.governance import PolicyInForce
from canonlog.domain.hashing import event_hash_v1
from canonlog.infrastructure.memory.pgtext import canonical_jsonb

MAX_NAME = 256
MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class RecordedExecution:
    """An execution id's request digest and the events it produced (canonlog.executions)."""

    digest: bytes
    events: tuple[RecordedEvent, ...]


@dataclass(slots=True)
class MemoryLedger:
    """One ledger: its grant and halt flag, events, streams, executions, keys, ceremonies
    and governance policies (oldest first)."""

    ledger_id: str
    writer_id: str | None = None
    epoch: int = 0
    halted: bool = False
    halt_reason: str | None = None
    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    executions: dict[str, RecordedExecution] = field(default_factory=dict)
    keys: dict[str, RegisteredKey] = field(default_factory=dict)
    ceremonies: dict[int, Ceremony] = field(default_factory=dict)
    policies: list[PolicyInForce] = field(default_factory=list)


class MemoryStore:
    """The ledgers of one in-memory event log, and the database's lock and clock."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ledgers: dict[str, MemoryLedger] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Event ids are unique across ledgers, as the events_event_id_key constraint makes them.
        self._event_ids: set[uuid.UUID] = set()
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _lock(self, ledger_id: str) -> asyncio.Lock:
        # Stands in for the transaction-scoped advisory lock of lock_ledger_v1: one
        # writing coroutine per ledger at a time. The critical sections do not await
        # today, but the lock keeps that serialisation explicit rather than incidental.
        self._check_open()
        return self._locks.setdefault(ledger_id, asyncio.Lock())

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the in-memory event log is closed")

    def _now(self, previous: datetime | None) -> datetime:
        """Authority time: the clock, but never earlier than the previous event."""
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        now = now.astimezone(UTC)
        return now if previous is None else max(now, previous)

    def _existing(self, ledger_id: str) -> MemoryLedger:
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist")
        return ledger

    def _system_event(self, ledger: MemoryLedger, event_type: str, payload: dict[str, Any],
                      writer_id: str, epoch: int) -> RecordedEvent:
        """The next event of the "$ledger" stream, as append_system_v1 builds it.

        Callers build it before changing the ledger, so a failure changes nothing.
        """
        last = ledger.events[-1] if ledger.events else None
        return sealed(RecordedEvent(
            ledger_id=ledger.ledger_id, sequence=len(ledger.events) + 1, event_id=uuid.uuid4(),
            stream_id=SYSTEM_STREAM, stream_version=len(ledger.streams.get(SYSTEM_STREAM, ())) + 1,
            event_type=event_type, payload=canonical_jsonb(payload).encode("utf-8"), metadata=b"{}",
            task_id=None, execution_id=None, correlation_id=None, causation_id=None,
            agent_id=None, writer_id=writer_id, epoch=epoch, writer_time=None,
            recorded_at=self._now(last.recorded_at if last else None),
            hash_version=HASH_VERSION, prev_hash=last.hash if last else GENESIS_HASH, hash=b"",
        ))

    def _store(self, ledger: MemoryLedger, events: list[RecordedEvent]) -> None:
        for event in events:
            ledger.events.append(event)
            ledger.streams.setdefault(event.stream_id, []).append(event)
            self._event_ids.add(event.event_id)


def ledger_state_of(ledger: MemoryLedger) -> LedgerState:
    return LedgerState(ledger.ledger_id, ledger.writer_id, ledger.epoch, ledger.halted,
                       ledger.halt_reason)


def sealed(event: RecordedEvent) -> RecordedEvent:
    """Returns the event with its hash, computed over every other field."""
    return replace(event, hash=event_hash_v1(event))


def halted_error(ledger: MemoryLedger) -> SystemHalted:
    return SystemHalted(f"ledger {ledger.ledger_id} is halted: {ledger.halt_reason}",
                        reason=ledger.halt_reason)


def check_grant(ledger: MemoryLedger, writer_id: str, epoch: int) -> None:
    if ledger.writer_id != writer_id or ledger.epoch != epoch:
        raise StaleWriter(
            f"writer {writer_id} at epoch {epoch} does not hold the grant of ledger "
            f"{ledger.ledger_id} (held by {ledger.writer_id or 'nobody'} at epoch {ledger.epoch})"
        )
