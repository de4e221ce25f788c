"""Finding sagas in the chain and driving on those left unfinished.

SagaIndex folds every saga stream it reads from the ledger, in sequence order, so
listing sagas by state needs no table of its own: the chain is the only record.
SagaRecoveryWorker resumes sagas whose last event is older than a threshold
(a driver crashed, or a backend was down), one saga at a time under its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from canonlog.application.ports import EventReader
from canonlog.application.sagas import SagaOrchestrator
from canonlog.domain.errors import CanonlogError, SagaBusy, SagaNotFound
from canonlog.domain.events import RecordedEvent
from canonlog.domain.saga import (
    SAGA_EVENT_TYPES,
    SAGA_STREAM_PREFIX,
    TERMINAL,
    SagaState,
    SagaStatus,
    fold,
    saga_stream,
)

logger = structlog.get_logger("canonlog.sagas.recovery")


async def read_saga(reader: EventReader, ledger_id: str,
                    saga_id: str) -> tuple[SagaState, list[RecordedEvent]]:
    """A saga's state and history, read without a writer; raises SagaNotFound."""
    events = await reader.read_stream(ledger_id, saga_stream(saga_id))
    if not events:
        raise SagaNotFound(f"no saga {saga_id!r} in ledger {ledger_id!r}")
    return fold(events), events


class SagaIndex:
    """Every saga of a ledger, folded from the chain; refresh() reads what is new."""

    def __init__(self, reader: EventReader, ledger_id: str, *, page_size: int = 1000) -> None:
        self._reader = reader
        self._ledger_id = ledger_id
        self._page_size = page_size
        self._position = 0
        self._events: dict[str, list[RecordedEvent]] = {}
        self._states: dict[str, SagaState] = {}

    async def refresh(self) -> None:
        """Reads the events appended since the last refresh and folds the sagas they touch."""
        touched: set[str] = set()
        while True:
            page = await self._reader.read_all(self._ledger_id, after=self._position,
                                              limit=self._page_size)
            for event in page:
                self._position = event.sequence
                if event.stream_id.startswith(SAGA_STREAM_PREFIX) \
                        and event.event_type in SAGA_EVENT_TYPES:
                    saga_id = event.stream_id.removeprefix(SAGA_STREAM_PREFIX)
                    self._events.setdefault(saga_id, []).append(event)
                    touched.add(saga_id)
            if len(page) < self._page_size:
                break
        for saga_id in touched:
            try:
                state = fold(self._events[saga_id])
            except CanonlogError as exc:
                logger.error("saga stream does not fold", saga_id=saga_id, error=str(exc))
                continue
            self._states[saga_id] = state

    def sagas(self, status: SagaStatus | None = None) -> list[SagaState]:
        """The sagas seen so far, oldest first, optionally only those in one status."""
        found = sorted(self._states.values(), key=lambda s: s.created_at)
        return [s for s in found if status is None or s.status is status]

    def counts(self) -> dict[SagaStatus, int]:
        counts = dict.fromkeys(SagaStatus, 0)
        for state in self._states.values():
            counts[state.status] += 1
        return counts

    def stale(self, older_than: timedelta, now: datetime | None = None) -> list[SagaState]:
        """Unfinished sagas whose last event is older than older_than."""
        cutoff = (now or datetime.now(UTC)) - older_than
        return [s for s in self.sagas() if s.status not in TERMINAL and s.updated_at <= cutoff]


@dataclass
class WorkerReport:
    """What one pass of the worker did."""

    resumed: int = 0
    busy: int = 0
    failed: int = 0


class SagaRecoveryWorker:
    """Resumes stale sagas every interval seconds. No error ends it: each is logged,
    `failing` says whether the last pass failed or left a saga failing, `last_error`
    what went wrong last, and `passes` counts the passes done."""

    def __init__(self, orchestrator: SagaOrchestrator, index: SagaIndex, *,
                 stale_after: float, interval: float) -> None:
        self._orchestrator = orchestrator
        self._index = index
        self._stale_after = timedelta(seconds=stale_after)
        self._interval = interval
        self.last_error: str | None = None
        self.failing = False
        self.passes = 0

    async def run_once(self) -> WorkerReport:
        """One pass: refresh the index, then resume each stale saga not held elsewhere."""
        report = WorkerReport()
        await self._index.refresh()
        for state in self._index.stale(self._stale_after):
            with structlog.contextvars.bound_contextvars(saga_id=state.saga_id,
                                                         trace_id=state.trace_id):
                try:
                    ended = await self._orchestrator.resume_saga(state.saga_id)
                except SagaBusy:
                    report.busy += 1
                    continue
                except Exception as exc:  # one saga's failure must not stop the others
                    report.failed += 1
                    self.last_error = f"saga {state.saga_id}: {type(exc).__name__}: {exc}"
                    logger.error("saga resume failed", error=self.last_error,
                                 exc_info=not isinstance(exc, CanonlogError))
                    continue
                report.resumed += 1
                logger.info("saga resumed", status=ended.status.value)
        self.passes += 1
        return report

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Runs passes until stop is set (or forever); a failed pass is logged and retried."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                report = await self.run_once()
                self.failing = report.failed > 0
            except Exception as exc:  # the worker outlives a pass that fails, and says so
                self.failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("saga worker pass failed", error=self.last_error,
                             exc_info=not isinstance(exc, CanonlogError))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
