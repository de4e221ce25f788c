"""The canonical writer of one ledger.

Before it accepts a write, an EventWriterService has checked PostgreSQL's
durability settings and the integrity schema, holds the writer lease, has
compared the database head with its own last known head and the newest trusted
checkpoint, has re-verified the chain's tail and holds the ledger's grant.
Before every batch it checks the lease deadline and every halt channel (Redis, in
production), failing closed when halt state is unknown; the database checks its
own halt flag inside the append itself, under the ledger lock, so a halt that
lands between the two checks still stops the write. Concurrent callers are coalesced into one
database call per batch (group commit); each caller gets its own outcome, and
only after commit.

No append waits longer than the append deadline (AppendTimeout), and no
background task dies silently: one that raises is logged with its cause, fails
every append waiting on the writer (WriterTaskFailed) and is restarted; health()
reports it. Both errors leave the append's outcome unknown, which a retry with
the same execution id resolves.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from canonlog.application.append_queue import OVERLAP_AT, AppendDeadlines, AppendQueue, Pending
from canonlog.application.halting import HaltOutcome, halt_ledger
from canonlog.application.ports import (
    AppendOutcome,
    AppendResult,
    DatabaseInspector,
    EventLog,
    HaltChannel,
    HeadStore,
    TrustedCheckpoints,
    WriterLease,
)
from canonlog.application.startup import verify_before_writing
from canonlog.application.supervision import TaskProblem, TaskSupervisor
from canonlog.domain.errors import (
    AppendTimeout,
    CanonlogError,
    GrantUnavailable,
    LeaseUnavailable,
    StaleWriter,
    SystemHalted,
    WriterInconsistency,
    WriterLeaseLost,
    WriterNotVerified,
    WriterStopped,
    WriterTaskFailed,
)
from canonlog.domain.events import AppendRequest, Head, RecordedEvent, WriterGrant

_FLUSHER: Final = "canonlog-flusher"
_LEASE: Final = "canonlog-lease"


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """How one writer batches and how long it trusts its lease."""

    ledger_id: str
    writer_id: str
    max_batch_requests: int = 1024
    max_batch_events: int = 8192
    #: Seconds the flusher waits for more callers once it has one; 0 flushes at once
    #: (callers arriving during a flush still share the next batch).
    max_wait: float = 0.0
    lease_renew_interval: float = 1.0
    tail_events: int = 1000
    #: The last known head is saved at most this often (and always on stop): an older
    #: saved head only makes the next startup's comparison less strict.
    head_save_interval: float = 0.1
    #: Seconds an append may wait for its outcome before it fails with AppendTimeout;
    #: None waits without a deadline.
    append_timeout: float | None = 30.0


class WriterState(enum.Enum):
    NEW = "new"
    ACCEPTING = "accepting"
    LEASE_LOST = "lease_lost"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WriterHealth:
    """What a health check reads: healthy means accepting writes with every task running."""

    state: WriterState
    epoch: int | None
    healthy: bool
    #: The most recent unexpected failures of background tasks, oldest first.
    problems: tuple[TaskProblem, ...]
    task_restarts: int


#: What a batch came to: an outcome per request, or the refusal of the whole batch.
_Result = list[AppendOutcome] | CanonlogError

#: Told the number of requests and of events of each batch sent to the database.
BatchObserver = Callable[[int, int], None]


class EventWriterService:
    """The single writer of a ledger; see the module docstring for what it guarantees."""

    def __init__(
        self,
        event_log: EventLog,
        lease: WriterLease,
        halt_channels: Sequence[HaltChannel],
        heads: HeadStore,
        config: WriterConfig,
        *,
        inspector: DatabaseInspector | None = None,
        checkpoints: TrustedCheckpoints | None = None,
    ) -> None:
        self._event_log = event_log
        self._lease = lease
        self._halt_channels = tuple(halt_channels)
        self._heads = heads
        self._config = config
        self._inspector = inspector
        self._checkpoints = checkpoints
        self._queue = AppendQueue(max_requests=config.max_batch_requests,
                                  max_events=config.max_batch_events, max_wait=config.max_wait)
        self._deadlines = (None if config.append_timeout is None
                           else AppendDeadlines(config.append_timeout, self._expire))
        self._grant: WriterGrant | None = None
        self._state = WriterState.NEW
        self._unsaved_head: Head | None = None
        self._head_saved_at = 0.0
        self._batch_observers: list[BatchObserver] = []
        self._logger = structlog.get_logger("canonlog.writer").bind(
            ledger_id=config.ledger_id, writer_id=config.writer_id
        )
        self._tasks = TaskSupervisor(
            self._logger, self._task_failed,
            should_restart=lambda: self._state is not WriterState.STOPPED,
        )

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def grant(self) -> WriterGrant | None:
        return self._grant

    @property
    def problems(self) -> tuple[TaskProblem, ...]:
        """The most recent unexpected failures of the writer's background tasks."""
        return self._tasks.problems

    def health(self) -> WriterHealth:
        running = all(not task.done() for task in self._tasks.tasks.values())
        return WriterHealth(
            state=self._state,
            epoch=self._grant.epoch if self._grant is not None else None,
            healthy=self._state is WriterState.ACCEPTING and running,
            problems=self._tasks.problems, task_restarts=self._tasks.restarts,
        )

    async def start(self) -> WriterGrant:
        """Verifies, takes the lease and the grant, and starts accepting writes.

        Raises UnsafeDurability, LeaseUnavailable, WriterInconsistency (after halting
        the ledger) or GrantUnavailable; the writer then accepts no writes.
        """
        if self._state is not WriterState.NEW:
            raise WriterNotVerified(f"writer is {self._state.value}; start() runs once")
        await self._take_lease_and_grant()
        self._state = WriterState.ACCEPTING
        self._tasks.start(_FLUSHER, self._flush_loop)
        self._tasks.start(_LEASE, self._lease_loop)
        return self._require_grant()

    async def _take_lease_and_grant(self) -> None:
        config = self._config
        if not await self._lease.acquire():
            raise LeaseUnavailable(
                f"another process holds the writer lease of ledger {config.ledger_id}"
            )
        try:
            await verify_before_writing(
                self._event_log, config.ledger_id, config.writer_id, self._heads,
                halt_channels=self._halt_channels, inspector=self._inspector,
                checkpoints=self._checkpoints, tail_events=config.tail_events,
            )
            self._grant = await self._event_log.acquire_grant(config.ledger_id, config.writer_id)
        except BaseException:
            await self._lease.release()
            raise
        head = await self._event_log.head(config.ledger_id)
        self._heads.save(head)
        self._logger.warning("writer accepting writes", epoch=self._grant.epoch,
                             head=head.sequence)

    def _require_grant(self) -> WriterGrant:
        if self._grant is None:
            raise WriterNotVerified("the writer has not finished its startup verification")
        return self._grant

    async def append(self, request: AppendRequest) -> AppendResult:
        """Appends one request through the batcher; raises the error that refused it.

        Raises WriterNotVerified before start() has finished, WriterLeaseLost while
        the lease is lost, WriterStopped once the writer has stopped, SystemHalted
        (never retried) when the ledger is halted or its halt state is unknown, and
        the request's own errors otherwise. AppendTimeout (past the append deadline)
        and WriterTaskFailed leave the outcome unknown: retry with the same
        execution id to learn it.
        """
        if self._state is not WriterState.ACCEPTING:
            raise self._not_accepting()
        future = self._queue.put(request)
        if self._deadlines is not None:
            # Expiry fails the future: the flusher skips the request if it has not
            # been sent yet; if it has, it may still commit.
            self._deadlines.watch(future, request)
        return await future

    def _expire(self, future: asyncio.Future[AppendResult], request: AppendRequest) -> None:
        if future.done():
            return
        timeout = self._config.append_timeout
        self._logger.error("append timed out", stream_id=request.stream_id,
                           execution_id=request.context.execution_id, timeout=timeout)
        future.set_exception(AppendTimeout(
            f"the append to stream {request.stream_id} was not resolved within {timeout}s; "
            "it may or may not have been written: retry it with the same execution id to "
            "learn which"
        ))

    def _not_accepting(self) -> CanonlogError:
        if self._state is WriterState.NEW:
            return WriterNotVerified("the writer has not finished its startup verification")
        if self._state is WriterState.LEASE_LOST:
            return WriterLeaseLost(
                f"writer {self._config.writer_id} does not hold the lease of ledger "
                f"{self._config.ledger_id}; writes are refused until it does"
            )
        return WriterStopped(f"writer {self._config.writer_id} is stopped")

    async def stop(self, *, hand_over: bool = False) -> None:
        """Stops writing; queued appends fail. With hand_over, releases the grant so that
        another writer may take it without a ceremony."""
        if self._state is WriterState.STOPPED:
            return
        was_accepting = self._state is WriterState.ACCEPTING
        self._state = WriterState.STOPPED
        self._queue.stop()
        await self._tasks.cancel(_LEASE)
        try:
            # The flusher finishes what is queued, unless the database does not answer.
            async with asyncio.timeout(self._config.append_timeout):
                await self._tasks.wait(_FLUSHER)
        except TimeoutError:
            self._logger.error("writer stopped with a batch unresolved")
        await self._tasks.cancel()
        self._queue.fail_waiting(WriterStopped(f"writer {self._config.writer_id} stopped"))
        if self._deadlines is not None:
            self._deadlines.close()
        self._save_head(None, force=True)
        if hand_over and was_accepting and self._grant is not None:
            await self._event_log.release_grant(self._grant)
            self._heads.save(await self._event_log.head(self._config.ledger_id))
            self._logger.warning("grant released for hand-over", epoch=self._grant.epoch)
        await self._lease.release()

    async def halt(self, reason: str) -> HaltOutcome:
        """Halts the ledger and announces it on every halt channel (see halt_ledger)."""
        outcome = await halt_ledger(self._event_log, self._config.ledger_id, reason,
                                    self._config.writer_id, self._halt_channels)
        self._logger.critical("ledger halted", reason=outcome.reason,
                              unannounced=len(outcome.unannounced))
        return outcome

    # -- the flusher -----------------------------------------------------------------

    async def _flush_loop(self) -> None:
        # The database runs one batch of a ledger at a time, and resolving a batch
        # wakes its callers, whose next appends are Python work of their own. When
        # many appends are queued as a batch commits, the flusher sends them before
        # it resolves that batch: the callers' work then overlaps the database's
        # instead of alternating with it. When few are, it resolves the batch first
        # and lets its callers queue their next appends, so that they share one
        # batch: every batch costs the database a commit and a call of the append
        # function, which outweigh a few callers' work. (Measured at 16 callers on
        # 2 cores: batches of 16 rather than alternating batches of 8, 20-40% more
        # appends per second.) A refused batch is resolved at once, since a halt or
        # a lost grant also fails what is queued.
        done: tuple[list[Pending], _Result] | None = None
        while True:
            if done is not None and (len(self._queue) < OVERLAP_AT
                                     or isinstance(done[1], CanonlogError)):
                self._settle(*done)
                done = None
                await asyncio.sleep(0)  # the callers resolved run before the next take
            batch = await self._queue.take_batch(split=done is None)
            if batch is None:
                if done is not None:
                    self._settle(*done)
                return
            if not batch:
                continue
            if done is None:
                done = (batch, await self._submit(batch))
                continue
            call = asyncio.ensure_future(self._submit(batch))
            self._settle(*done)
            done = (batch, await call)

    def _settle(self, batch: list[Pending], result: _Result) -> None:
        self._resolve(batch, result)
        self._queue.settle(batch)

    def observe_batches(self, observer: BatchObserver) -> None:
        """Calls observer with the requests and events of every batch sent to the database."""
        self._batch_observers.append(observer)

    async def _submit(self, live: list[Pending]) -> _Result:
        """Checks the lease and every halt channel, then appends; a refusal of the whole
        batch is returned rather than raised."""
        try:
            grant = self._check_lease()
            await self._check_halt()
            for observer in self._batch_observers:
                observer(len(live), sum(len(item.request.events) for item in live))
            return await self._event_log.append_batch(grant, [item.request for item in live])
        except CanonlogError as exc:
            return exc

    def _resolve(self, live: list[Pending], result: _Result) -> None:
        if isinstance(result, SystemHalted):
            self._logger.warning("write refused: ledger halted", reason=result.reason,
                                 error=str(result), requests=len(live))
            self._fail(live, result)
            self._queue.fail_queued(result)
            return
        if isinstance(result, StaleWriter):
            self._logger.critical("write refused by the database: grant lost",
                                  error=str(result), requests=len(live))
            self._fail(live, result)
            self._lose_lease(str(result))
            return
        if isinstance(result, WriterLeaseLost | WriterStopped):
            self._fail(live, result)
            return
        if isinstance(result, CanonlogError):
            self._logger.error("write failed", error=str(result), requests=len(live))
            self._fail(live, result)
            return
        newest: RecordedEvent | None = None
        debug = self._logger.is_enabled_for(logging.DEBUG)
        for item, outcome in zip(live, result, strict=True):
            if isinstance(outcome, CanonlogError):
                self._logger.info("append refused", stream_id=item.request.stream_id,
                                  error=type(outcome).__name__, reason=str(outcome))
                if not item.future.done():
                    item.future.set_exception(outcome)
                continue
            last = outcome.events[-1]
            if not outcome.replayed and (newest is None or last.sequence > newest.sequence):
                newest = last
            if debug:
                self._logger.debug("appended", stream_id=item.request.stream_id,
                                   event_ids=[str(e.event_id) for e in outcome.events],
                                   sequence=last.sequence, epoch=last.epoch,
                                   replayed=outcome.replayed)
            if not item.future.done():
                item.future.set_result(outcome)
        self._save_head(None if newest is None
                        else Head(newest.ledger_id, newest.sequence, newest.hash))

    def _save_head(self, head: Head | None, *, force: bool = False) -> None:
        if head is not None:
            self._unsaved_head = head
        now = time.monotonic()
        if self._unsaved_head is not None and (
            force or now - self._head_saved_at >= self._config.head_save_interval
        ):
            self._heads.save(self._unsaved_head)
            self._unsaved_head = None
            self._head_saved_at = now

    def _check_lease(self) -> WriterGrant:
        if self._state is not WriterState.ACCEPTING:
            raise self._not_accepting()
        if time.monotonic() >= self._lease.valid_until():
            self._lose_lease("lease deadline passed before the write")
            raise self._not_accepting()
        return self._require_grant()

    async def _check_halt(self) -> None:
        ledger = self._config.ledger_id
        for channel in self._halt_channels:
            reason = await channel.halt_reason(ledger)
            if reason is not None:
                raise SystemHalted(f"ledger {ledger} is halted: {reason}", reason=reason)

    @staticmethod
    def _fail(items: list[Pending], error: CanonlogError) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)

    def _task_failed(self, task: str, exc: BaseException) -> None:
        """A background task raised: every waiting append fails, as its outcome is unknown."""
        error = WriterTaskFailed(
            f"the writer's {task} task failed ({type(exc).__name__}: {exc}); the append may "
            "or may not have been written: retry it with the same execution id to learn which"
        )
        error.__cause__ = exc
        self._queue.fail_waiting(error)

    # -- the lease -------------------------------------------------------------------

    def _lose_lease(self, why: str) -> None:
        if self._state is not WriterState.ACCEPTING:
            return
        self._state = WriterState.LEASE_LOST
        self._logger.critical("writer lease lost; writes refused", why=why)
        self._queue.fail_queued(self._not_accepting())

    async def _lease_loop(self) -> None:
        interval = self._config.lease_renew_interval
        while True:
            await asyncio.sleep(interval)
            if self._state is WriterState.ACCEPTING:
                if not await self._lease.renew() or time.monotonic() >= self._lease.valid_until():
                    self._lose_lease("lease renewal failed")
            elif self._state is WriterState.LEASE_LOST:
                await self._recover()

    async def _recover(self) -> None:
        """Takes the lease again once it is free, re-verifies and re-claims the grant
        with a new epoch; until then every write is refused."""
        await self._lease.release()
        try:
            await self._take_lease_and_grant()
        except WriterInconsistency as exc:
            self._state = WriterState.STOPPED
            self._queue.fail_queued(WriterStopped("writer stopped: startup verification failed"))
            self._logger.critical("writer stopped: re-verification failed", error=str(exc))
            return
        except GrantUnavailable as exc:
            # Another writer holds the grant (a failover was executed): this writer
            # is fenced for good, and retrying would only hold the lease from it.
            await self._lease.release()
            self._state = WriterState.STOPPED
            self._queue.fail_queued(WriterStopped(f"writer stopped: {exc}"))
            self._logger.critical("writer fenced: the grant belongs to another writer",
                                  error=str(exc))
            return
        except CanonlogError as exc:
            self._logger.info("writer lease not recovered yet", error=str(exc))
            return
        self._state = WriterState.ACCEPTING
