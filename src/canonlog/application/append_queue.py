"""The writer's queue of appends: callers put requests in, the flusher takes batches out.

A request is waiting from put until it is resolved: first queued, then in a batch
the flusher has taken and not yet settled. Both are known here, so that a failure
can fail every waiting caller at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from canonlog.application.ports import AppendResult
from canonlog.domain.errors import CanonlogError
from canonlog.domain.events import AppendRequest

#: Appends queued when a batch commits from which the flusher sends them before it
#: resolves that batch, so that two batches alternate (see the writer's flusher);
#: fewer wait for the resolved callers and share one batch with their next appends.
OVERLAP_AT: Final = 16


@dataclass(slots=True)
class Pending:
    request: AppendRequest
    future: asyncio.Future[AppendResult]


class AppendQueue:
    """Requests waiting for the flusher, taken in batches within the writer's limits.

    A deque and one wake-up future for the flusher, rather than an asyncio.Queue and
    a done callback per request: both cost more than the rest of queueing an append.
    """

    def __init__(self, *, max_requests: int, max_events: int, max_wait: float) -> None:
        self._max_requests = max_requests
        self._max_events = max_events
        self._max_wait = max_wait
        self._queued: deque[Pending] = deque()
        #: Batches taken and not yet settled, by id.
        self._taken: dict[int, list[Pending]] = {}
        self._stopping = False
        self._wakeup: asyncio.Future[None] | None = None

    def put(self, request: AppendRequest) -> asyncio.Future[AppendResult]:
        """Queues a request; its future is resolved with its outcome."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queued.append(Pending(request, future))
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return future

    def stop(self) -> None:
        """Makes take_batch return None once everything queued has been taken."""
        self._stopping = True
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def empty(self) -> bool:
        return not self._queued

    def __len__(self) -> int:
        return len(self._queued)

    async def _wait(self, deadline: float | None) -> None:
        """Waits until a request is put or the queue stops, or past the deadline."""
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, _wake, wakeup)
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def take_batch(self, *, split: bool) -> list[Pending] | None:
        """Waits for a first append and takes what is queued with it, up to the limits,
        leaving out appends already resolved (expired while queued); None when the
        writer is stopping. With split, a queue of at least twice OVERLAP_AT goes in
        two batches, so that one is resolved while the other runs. The batch is
        waiting until settle(batch)."""
        queued = self._queued
        while not queued:
            if self._stopping:
                return None
            await self._wait(None)
        limit = self._max_requests
        if split and len(queued) >= 2 * OVERLAP_AT:
            limit = min(limit, (len(queued) + 1) // 2)
        max_events = self._max_events
        batch: list[Pending] = []
        events = 0
        deadline = (asyncio.get_running_loop().time() + self._max_wait
                    if self._max_wait > 0 else None)
        while len(batch) < limit and events < max_events:
            if not queued:
                if deadline is None or self._stopping:
                    break
                await self._wait(deadline)
                if not queued:
                    break
            item = queued.popleft()
            if not item.future.done():
                batch.append(item)
                events += len(item.request.events)
        if batch:
            self._taken[id(batch)] = batch
        return batch

    def settle(self, batch: list[Pending]) -> None:
        """Forgets a batch take_batch returned, once each of its futures is resolved."""
        self._taken.pop(id(batch), None)

    def fail_queued(self, error: CanonlogError) -> None:
        """Fails every request not yet taken into a batch."""
        queued = self._queued
        while queued:
            future = queued.popleft().future
            if not future.done():
                future.set_exception(error)

    def fail_waiting(self, error: CanonlogError) -> None:
        """Fails every request not yet resolved, queued or in a batch."""
        taken, self._taken = self._taken, {}
        for batch in taken.values():
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        self.fail_queued(error)


def _wake(wakeup: asyncio.Future[None]) -> None:
    if not wakeup.done():
        wakeup.set_result(None)


class AppendDeadlines:
    """Calls on_expire for each watched append not resolved within timeout seconds.

    One timer serves every append: the timeout is the same for all, so deadlines
    come in the order appends are watched, and the timer only ever waits for the
    oldest unresolved one. (A timer per append costs about as much as the rest of
    the writer's work for that append.) Resolved appends leave the front of the
    line as new ones are watched, so the line holds about what is in flight.
    """

    def __init__(self, timeout: float,
                 on_expire: Callable[[asyncio.Future[AppendResult], AppendRequest], None]) -> None:
        self._timeout = timeout
        self._on_expire = on_expire
        self._line: deque[tuple[float, asyncio.Future[AppendResult], AppendRequest]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[AppendResult], request: AppendRequest) -> None:
        line = self._line
        while line and line[0][1].done():
            line.popleft()
        loop = asyncio.get_running_loop()
        line.append((loop.time() + self._timeout, future, request))
        if self._timer is None:
            self._timer = loop.call_at(line[0][0], self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        line = self._line
        while line and (line[0][1].done() or line[0][0] <= now):
            _, future, request = line.popleft()
            if not future.done():
                self._on_expire(future, request)
        if line:
            self._timer = loop.call_at(line[0][0], self._sweep)

    def close(self) -> None:
        """Stops watching: nothing expires after this."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._line.clear()
