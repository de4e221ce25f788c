"""Reading what an execution id produced: every adapter finds the same events."""

from __future__ import annotations

from canonlog.application.ports import AppendResult, append_one
from canonlog.domain.errors import CanonlogError
from tests.support.ledgers import request


async def test_read_execution_returns_the_events_of_that_execution_id_alone(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s", {"n": 0}))
    first, second, _ = await event_log.append_batch(grant, [
        request("s", {"a": 1}, {"a": 2}, execution_id="run/1"),
        request("t", {"b": 1}, execution_id="run-2"),
        request("s", {"a": 3}),
    ])
    assert isinstance(first, AppendResult) and isinstance(second, AppendResult)
    assert await event_log.read_execution("main", "run/1") == list(first.events)
    assert await event_log.read_execution("main", "run-2") == list(second.events)
    assert [e.stream_id for e in await event_log.read_execution("main", "run-2")] == ["t"]


async def test_read_execution_is_empty_for_an_unknown_id_ledger_or_a_refused_request(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s", {"a": 1}, execution_id="x-1"))
    (refused,) = await event_log.append_batch(grant, [
        request("s", {"a": 1}, expected=5, execution_id="x-2")])
    assert isinstance(refused, CanonlogError)
    assert await event_log.read_execution("main", "x-2") == []
    assert await event_log.read_execution("main", "nobody") == []
    assert await event_log.read_execution("elsewhere", "x-1") == []


async def test_a_replayed_request_reads_back_the_original_events_once(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    original = await append_one(event_log, grant, request("s", {"a": 1}, execution_id="x-1"))
    replay = await append_one(event_log, grant, request("s", {"a": 1}, execution_id="x-1"))
    assert replay.replayed
    assert await event_log.read_execution("main", "x-1") == list(original.events)
