"""AppendQueue: batches in arrival order within the limits, and every waiting append failable."""

from __future__ import annotations

import asyncio

import pytest

from canonlog.application.append_queue import OVERLAP_AT, AppendQueue, Pending
from canonlog.application.ports import AppendResult
from canonlog.domain.errors import WriterStopped
from canonlog.domain.events import AppendRequest, NewEvent


def _request(stream: str, events: int = 1) -> AppendRequest:
    return AppendRequest.create(stream, [NewEvent.create("x", {})] * events)


def _queue(**limits: float) -> AppendQueue:
    return AppendQueue(max_requests=int(limits.get("max_requests", 1024)),
                       max_events=int(limits.get("max_events", 8192)),
                       max_wait=limits.get("max_wait", 0.0))


def _streams(batch: list[Pending] | None) -> list[str]:
    assert batch is not None
    return [item.request.stream_id for item in batch]


async def test_batches_keep_arrival_order_within_the_request_and_event_limits() -> None:
    queue = _queue(max_requests=3, max_events=4)
    for name, events in (("a", 1), ("b", 1), ("c", 1), ("d", 3), ("e", 1)):
        queue.put(_request(name, events))
    assert _streams(await queue.take_batch(split=False)) == ["a", "b", "c"]
    assert _streams(await queue.take_batch(split=False)) == ["d", "e"]
    assert queue.empty()


async def test_a_long_queue_is_split_in_two_only_when_asked() -> None:
    queue = _queue()
    for n in range(2 * OVERLAP_AT - 1):
        queue.put(_request(f"s{n}"))
    assert len(_streams(await queue.take_batch(split=True))) == 2 * OVERLAP_AT - 1
    for n in range(2 * OVERLAP_AT + 1):
        queue.put(_request(f"s{n}"))
    first = await queue.take_batch(split=True)
    assert _streams(first) == [f"s{n}" for n in range(OVERLAP_AT + 1)]
    assert len(_streams(await queue.take_batch(split=True))) == OVERLAP_AT
    for n in range(2 * OVERLAP_AT):
        queue.put(_request(f"s{n}"))
    assert len(_streams(await queue.take_batch(split=False))) == 2 * OVERLAP_AT


async def test_take_batch_waits_for_a_put_and_leaves_out_appends_already_resolved() -> None:
    queue = _queue()
    taking = asyncio.ensure_future(queue.take_batch(split=False))
    await asyncio.sleep(0.01)
    assert not taking.done()
    expired = queue.put(_request("expired"))
    expired.cancel()
    queue.put(_request("live"))
    assert _streams(await asyncio.wait_for(taking, 1)) == ["live"]
    queue.put(_request("gone")).cancel()
    assert await queue.take_batch(split=False) == []


async def test_max_wait_gathers_appends_arriving_within_it() -> None:
    queue = _queue(max_wait=0.05)
    queue.put(_request("first"))
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, queue.put, _request("second"))
    assert _streams(await queue.take_batch(split=False)) == ["first", "second"]


async def test_stop_ends_take_batch_once_the_queue_is_drained() -> None:
    queue = _queue()
    queue.put(_request("a"))
    queue.stop()
    assert _streams(await queue.take_batch(split=False)) == ["a"]
    assert await queue.take_batch(split=False) is None
    waiting = _queue()
    taking = asyncio.ensure_future(waiting.take_batch(split=False))
    await asyncio.sleep(0.01)
    waiting.stop()
    assert await asyncio.wait_for(taking, 1) is None


async def test_fail_waiting_fails_queued_and_unsettled_batches_but_not_settled_ones() -> None:
    queue = _queue(max_requests=1)
    futures = {name: queue.put(_request(name)) for name in ("settled", "taken", "queued")}
    settled = await queue.take_batch(split=False)
    taken = await queue.take_batch(split=False)
    assert settled and taken
    queue.settle(settled)
    error = WriterStopped("stopped")
    queue.fail_waiting(error)
    assert not futures["settled"].done()
    for name in ("taken", "queued"):
        with pytest.raises(WriterStopped):
            futures[name].result()
    assert queue.empty()


async def test_fail_queued_leaves_taken_batches_alone() -> None:
    queue = _queue(max_requests=1)
    taken_future: asyncio.Future[AppendResult] = queue.put(_request("taken"))
    queued_future = queue.put(_request("queued"))
    assert await queue.take_batch(split=False)
    queue.fail_queued(WriterStopped("stopped"))
    assert not taken_future.done()
    assert isinstance(queued_future.exception(), WriterStopped)
