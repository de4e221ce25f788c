"""The relay: the chain delivered to a destination by a named consumer with a durable cursor.

The chain is the outbox. A consumer reads the events after its cursor in sequence
order, delivers them, and only then moves its cursor to (sequence, hash) of the
last one the destination confirmed; a relay that dies between the two delivers
those events again, and the destination, keyed by sequence, changes nothing.
Before each read the consumer checks that the chain still holds its cursor's hash
at that sequence, and stops with HistoryRewritten when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from canonlog.application.ports import (
    ConsumerLease,
    Destination,
    EventNotifier,
    EventReader,
    RelayStore,
)
from canonlog.domain.errors import CanonlogError, ConsumerStopped, HistoryRewritten, RelayError
from canonlog.domain.events import RecordedEvent
from canonlog.domain.relay import Backoff, ConsumerState, clipped_error

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How a consumer runs: events per delivery, the polling interval that guarantees
    progress when no notification arrives, the backoff between failed attempts, and
    how often an idle relay confirms it still holds its lease."""

    batch_size: int = 500
    poll_interval: float = 1.0
    backoff: Backoff = field(default_factory=Backoff)
    lease_check_interval: float = 5.0


class RelayConsumer:
    """Runs one consumer against its destination; one process per consumer (the lease)."""

    def __init__(self, name: str, reader: EventReader, store: RelayStore,
                 destination: Destination, *, notifier: EventNotifier | None = None,
                 config: RelayConfig | None = None,
                 jitter: Callable[[], float] = random.random) -> None:
        self.name = name
        self._reader = reader
        self._store = store
        self._destination = destination
        self._notifier = notifier
        self._config = config or RelayConfig()
        self._jitter = jitter
        # After a batch fails, events go one at a time through single_until, so the
        # failure is charged to the event that caused it.
        self._single_until = 0
        self._retry_seq = 0
        self._retry_at = 0.0
        self._attempts = 0
        self._backlog = False

    async def step(self) -> int:
        """Delivers at most one batch; returns how many events it synced (0: nothing to
        do now). Raises HistoryRewritten or ConsumerStopped when the consumer must stop."""
        self._backlog = False
        state = await self._store.consumer(self.name)
        if state.paused:
            return 0
        if state.stopped is not None:
            raise ConsumerStopped(f"consumer {self.name!r} is stopped: {state.stopped}")
        events = await self._unsynced(state)
        self._backlog = bool(events)
        if not events:
            return 0
        first = events[0]
        if first.sequence == self._retry_seq and time.monotonic() < self._retry_at:
            return 0
        batch = events[:1] if first.sequence <= self._single_until else events
        try:
            await self._destination.deliver(batch)
        except Exception as exc:  # a destination is outside code: whatever it raises is a failure
            if len(batch) > 1:
                self._single_until = batch[-1].sequence
                log.info("relay batch failed; delivering one at a time", consumer=self.name,
                         first=first.sequence, last=batch[-1].sequence, error=str(exc))
                return 0
            await self._failed(state, first, exc)
            return 0
        last = batch[-1]
        if not await self._store.advance(self.name, state.cursor_seq, last.sequence, last.hash):
            raise RelayError(f"the cursor of consumer {self.name!r} moved under it; "
                             "is another relay running it without the lease?")
        self._retry_seq = 0
        return len(batch)

    async def drain(self) -> int:
        """Steps until nothing is left to deliver now (waiting out retries); returns how
        many events it synced. Raises what step() raises."""
        synced = 0
        while True:
            count = await self.step()
            synced += count
            if count:
                continue
            if not self._backlog:
                return synced
            if self._retry_seq:
                await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))

    async def _unsynced(self, state: ConsumerState) -> list[RecordedEvent]:
        """The events after the cursor, having checked the chain still holds the cursor."""
        if state.cursor_seq == 0:
            return await self._reader.read_all(state.ledger_id, after=0,
                                               limit=self._config.batch_size)
        events = await self._reader.read_all(state.ledger_id, after=state.cursor_seq - 1,
                                             limit=self._config.batch_size + 1)
        if not events or events[0].sequence != state.cursor_seq \
                or events[0].hash != state.cursor_hash:
            error = HistoryRewritten(state.cursor_seq)
            await self._store.stop(self.name, str(error))
            log.error("relay consumer stopped", consumer=self.name, reason=str(error))
            raise error
        return events[1:]

    async def _failed(self, state: ConsumerState, event: RecordedEvent, exc: BaseException
                      ) -> None:
        """Records a failed attempt; past max_attempts, stops or dead-letters per policy."""
        # The attempts this process has seen set the wait it records; after a restart
        # the stored count (which the policy uses) may be higher, and the wait shorter.
        seen = self._attempts if self._retry_seq == event.sequence else 0
        retry_in = self._config.backoff.delay(seen + 1, self._jitter)
        failure = await self._store.record_failure(self.name, event.sequence, event.hash,
                                                   clipped_error(exc), retry_in)
        delay = retry_in if failure.attempts == seen + 1 else \
            self._config.backoff.delay(failure.attempts, self._jitter)
        self._attempts = failure.attempts
        log.warning("relay delivery failed", consumer=self.name, sequence=event.sequence,
                    attempts=failure.attempts, retry_in=round(delay, 3), error=failure.last_error)
        if failure.attempts < state.max_attempts:
            self._retry_seq, self._retry_at = event.sequence, time.monotonic() + delay
            return
        self._retry_seq = 0
        if state.poison_policy == "stop":
            reason = (f"sequence {event.sequence} failed {failure.attempts} times: "
                      f"{failure.last_error}")
            await self._store.stop(self.name, reason)
            log.error("relay consumer stopped", consumer=self.name, reason=reason)
            raise ConsumerStopped(f"consumer {self.name!r} is stopped: {reason}")
        if not await self._store.dead_letter(self.name, state.cursor_seq, event.sequence,
                                             event.hash):
            raise RelayError(f"the cursor of consumer {self.name!r} moved under it")
        log.error("relay event dead-lettered", consumer=self.name, sequence=event.sequence,
                  attempts=failure.attempts, error=failure.last_error)

    async def run(self, lease: ConsumerLease, stop: asyncio.Event | None = None) -> None:
        """Takes the consumer's lease (waiting while another process holds it), then
        delivers until stop is set; returns with the lease released. Raises what step()
        raises, and RelayError when the lease is lost."""
        stop = stop or asyncio.Event()
        acquiring = asyncio.ensure_future(lease.acquire(self.name, wait=True))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not acquiring.done() or not acquiring.result():  # result() raises its error
                return
            log.info("relay consumer running", consumer=self.name)
            checked = time.monotonic()
            while not stop.is_set():
                if await self.step():
                    continue
                if time.monotonic() - checked > self._config.lease_check_interval:
                    if not await lease.held():
                        raise RelayError(f"consumer {self.name!r} lost its lease")
                    checked = time.monotonic()
                await self._idle(stop)
        finally:
            for task in (acquiring, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CanonlogError):
                await acquiring
            await lease.release()

    async def _idle(self, stop: asyncio.Event) -> None:
        """Waits for a notification, the poll interval, a retry's time, or stop."""
        timeout = self._config.poll_interval
        if self._retry_seq:
            timeout = max(0.0, min(timeout, self._retry_at - time.monotonic()))
        state = await self._store.consumer(self.name)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if self._notifier is not None and not state.paused and not self._retry_seq:
            waits.append(asyncio.ensure_future(
                self._notifier.wait(state.ledger_id, state.cursor_seq, timeout)))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()


async def replay_dead_letters(name: str, reader: EventReader, store: RelayStore,
                              destination: Destination,
                              sequences: Sequence[int] | None = None) -> list[int]:
    """Delivers the consumer's dead letters again (all, or those named) and forgets each
    that the destination confirmed; returns their sequences. Raises HistoryRewritten
    when the chain no longer holds a dead letter's event with its recorded hash."""
    state = await store.consumer(name)
    wanted = set(sequences) if sequences is not None else None
    replayed: list[int] = []
    for letter in await store.failures(name, dead_letters_only=True):
        if wanted is not None and letter.sequence not in wanted:
            continue
        found = await reader.read_all(state.ledger_id, after=letter.sequence - 1, limit=1)
        if not found or found[0].sequence != letter.sequence or found[0].hash != letter.hash:
            raise HistoryRewritten(letter.sequence)
        await destination.deliver(found)
        await store.resolve(name, letter.sequence)
        replayed.append(letter.sequence)
    return replayed


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    """How far a consumer is: its cursor against the head, the age of its oldest
    unsynced event, and its failed and dead-lettered events."""

    state: ConsumerState
    head: int
    lag_events: int
    lag_seconds: float
    failing: int
    dead_letters: int

    def to_json(self) -> dict[str, Any]:
        """The status as the CLI and the HTTP service render it."""
        state = self.state
        return {"consumer": state.name, "ledger_id": state.ledger_id,
                "cursor": {"sequence": state.cursor_seq,
                           "hash": state.cursor_hash.hex() if state.cursor_hash else None},
                "head": self.head, "lag_events": self.lag_events,
                "lag_seconds": round(self.lag_seconds, 3), "failing": self.failing,
                "dead_letters": self.dead_letters, "paused": state.paused,
                "stopped": state.stopped, "poison_policy": state.poison_policy,
                "max_attempts": state.max_attempts,
                "synced_at": state.synced_at.isoformat() if state.synced_at else None}


async def consumer_status(name: str, reader: EventReader, store: RelayStore,
                          now: datetime | None = None) -> ConsumerStatus:
    """Returns the consumer's status; raises ConsumerNotFound for an unknown name."""
    state = await store.consumer(name)
    head = await reader.head(state.ledger_id)
    lag_seconds = 0.0
    if head.sequence > state.cursor_seq:
        oldest = await reader.read_all(state.ledger_id, after=state.cursor_seq, limit=1)
        if oldest:
            moment = now or datetime.now(UTC)
            lag_seconds = max(0.0, (moment - oldest[0].recorded_at).total_seconds())
    failures = await store.failures(name)
    dead = sum(1 for failure in failures if failure.status == "dead_letter")
    return ConsumerStatus(state, head.sequence, max(0, head.sequence - state.cursor_seq),
                          lag_seconds, len(failures) - dead, dead)
