"""The EventStore domain services use: canonlog.open() and canonlog.testing agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import canonlog
from canonlog.domain.hashing import event_hash_v1
from canonlog.testing import open_in_memory


@pytest.fixture(params=["memory", "postgres"])
async def store(request, database, tmp_path) -> AsyncIterator[canonlog.EventStore]:
    if request.param == "memory":
        async with open_in_memory() as log:
            yield log
    else:
        settings = canonlog.Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                                     data_dir=tmp_path)
        async with canonlog.open(settings) as log:
            yield log


async def test_append_returns_what_is_recorded_and_hashes_verify(store):
    result = await store.append("order-1", [canonlog.event("placed", {"amount": 120}),
                                            canonlog.event("paid", {"amount": 120})],
                                expected_version=canonlog.StreamState.NO_STREAM,
                                task_id="checkout", execution_id="x-1", agent_id="agent-7")
    assert [e.sequence for e in result.events] == [2, 3]
    assert result.events == tuple(await store.read_stream("order-1"))
    for event in await store.read_all():
        assert event.hash == event_hash_v1(event)
    assert (await store.head()).sequence == 3


async def test_errors_are_the_same(store):
    await store.append("s", [canonlog.event("x", {})], execution_id="x-1")
    with pytest.raises(canonlog.ConcurrencyConflict):
        await store.append("s", [canonlog.event("x", {})],
                           expected_version=canonlog.StreamState.NO_STREAM)
    with pytest.raises(canonlog.IdempotencyConflict):
        await store.append("s", [canonlog.event("x", {"other": 1})], execution_id="x-1")
    with pytest.raises(canonlog.InvalidEvent, match=r"duplicate|twice"):
        await store.append("s", [canonlog.event("x", b'{"a":1,"a":2}')])
    with pytest.raises(canonlog.InvalidEvent, match="reserved"):
        await store.append("$ledger", [canonlog.event("x", {})])
    replay = await store.append("s", [canonlog.event("x", {})], execution_id="x-1")
    assert replay.replayed and replay.events[0].sequence == 2
    assert (await store.head()).sequence == 2


async def test_subscribers_see_every_event_in_order(store):
    await store.append("s", [canonlog.event("x", {"n": 0})])
    seen: list[int] = []

    async def consume() -> None:
        async for event in store.subscribe(after=0, poll_interval=0.05):
            seen.append(event.sequence)
            if len(seen) == 4:
                return

    task = asyncio.create_task(consume())
    for n in range(2):
        await store.append("s", [canonlog.event("x", {"n": n + 1})])
    await asyncio.wait_for(task, 3.0)
    assert seen == [1, 2, 3, 4]


async def test_concurrent_appends_are_gap_free(store):
    results = await asyncio.gather(*(
        store.append(f"s-{i % 5}", [canonlog.event("x", {"i": i})]) for i in range(40)))
    sequences = sorted(r.events[0].sequence for r in results)
    assert sequences == list(range(2, 42))
