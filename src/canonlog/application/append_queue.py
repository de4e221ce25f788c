"""The writer's queue of appends: callers put requests in, the flusher takes batches out.

Every request put in has a future that stays in `waiting` until it is resolved,
whether it is still queued or already in a batch, so that a failure can fail
every waiting caller at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from canonlog.application.ports import AppendResult
from canonlog.domain.errors import CanonlogError
from canonlog.domain.events import AppendRequest

_STOP: Final = object()
#: A queue at least this long, with no committed batch to resolve meanwhile, is sent
#: in two batches (see take_batch).
SPLIT_AT: Final = 16


@dataclass(slots=True)
class Pending:
    request: AppendRequest
    future: asyncio.Future[AppendResult]


class AppendQueue:
    """Requests waiting for the flusher, taken in batches within the writer's limits."""

    def __init__(self, *, max_requests: int, max_events: int, max_wait: float) -> None:
        self._max_requests = max_requests
        self._max_events = max_events
        self._max_wait = max_wait
        self._queue: asyncio.Queue[Pending | object] = asyncio.Queue()
        self._waiting: set[asyncio.Future[AppendResult]] = set()

    def put(self, request: AppendRequest) -> asyncio.Future[AppendResult]:
        """Queues a request; its future is resolved with its outcome."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        self._queue.put_nowait(Pending(request, future))
        return future

    def stop(self) -> None:
        """Makes take_batch return None once what is queued before it has been taken."""
        self._queue.put_nowait(_STOP)

    def empty(self) -> bool:
        return self._queue.empty()

    async def take_batch(self, *, split: bool) -> list[Pending] | None:
        """Waits for a first append and takes what is queued with it, up to the limits;
        None when the writer is stopping. With split and nothing committed to resolve,
        a long queue goes in two batches, so that one is resolved while the other runs."""
        first = await self._queue.get()
        if first is _STOP:
            return None
        assert isinstance(first, Pending)
        batch = [first]
        events = len(first.request.events)
        limit = self._max_requests
        queued = self._queue.qsize() + 1
        if split and queued >= SPLIT_AT:
            limit = min(limit, (queued + 1) // 2)
        deadline = time.monotonic() + self._max_wait if self._max_wait > 0 else 0.0
        while len(batch) < limit and events < self._max_events:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            elif deadline == 0.0:
                break
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is _STOP:
                self._queue.put_nowait(_STOP)
                break
            assert isinstance(item, Pending)
            batch.append(item)
            events += len(item.request.events)
        return batch

    def fail_queued(self, error: CanonlogError) -> None:
        """Fails every request not yet taken into a batch."""
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if item is _STOP:
                self._queue.put_nowait(_STOP)
                return
            assert isinstance(item, Pending)
            if not item.future.done():
                item.future.set_exception(error)

    def fail_waiting(self, error: CanonlogError) -> None:
        """Fails every request not yet resolved, queued or in a batch."""
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(error)
        self.fail_queued(error)


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
