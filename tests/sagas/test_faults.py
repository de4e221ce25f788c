"""Faults against real PostgreSQL and Valkey: crashes around effects and compensations,
a backend that stays down, two drivers on one saga, an abort mid-run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as redis

from canonlog.application.sagas import SagaOrchestrator
from canonlog.domain.errors import SagaBusy
from canonlog.domain.saga import SagaStatus
from canonlog.infrastructure.sagas.kv import KeyValueBackend
from tests.sagas.conftest import SagaWorld, order_steps
from tests.sagas.faulty import Faults, FaultyBackend, SimulatedCrash


def faulty(world: SagaWorld, faults: Faults) -> dict[str, FaultyBackend]:
    return {name: FaultyBackend(b, world.client, faults) for name, b in world.backends.items()}


def total(backends: dict[str, FaultyBackend], attribute: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for backend in backends.values():
        counts.update(getattr(backend, attribute))
    return counts


async def _kinds(sagas: SagaOrchestrator, saga_id: str) -> list[tuple[str, str | None]]:
    return [(e.event_type, json.loads(e.payload).get("step_id"))
            for e in await sagas.history(saga_id)]


async def test_a_crash_after_the_effect_is_resumed_without_applying_it_twice(world: SagaWorld):
    faults = Faults()
    backends = faulty(world, faults)
    sagas = world.orchestrator(backends=backends)
    saga_id = await sagas.create_saga("order", order_steps(world))
    faults.crash_after.add(f"{saga_id}/cache")
    with pytest.raises(SimulatedCrash):
        await sagas.execute_saga(saga_id)
    assert (await sagas.state(saga_id)).step("cache").status.value == "pending"
    # A new process picks it up.
    state = await world.orchestrator(backends=backends).resume_saga(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert total(backends, "effects") == {f"{saga_id}/{s}": 1 for s in ("reserve", "cache",
                                                                         "receipt")}
    cache = [json.loads(e.payload) for e in await sagas.history(saga_id)
             if e.event_type == "step_succeeded" and b'"cache"' in e.payload]
    assert cache == [{"step_id": "cache", "attempt": 2, "applied": False,
                      "result": {"key": f"{world.prefix}:order:o-1"}}]
    assert not any(b.violations for b in backends.values())


async def test_a_crash_during_compensation_is_resumed_and_finishes_it(world: SagaWorld):
    faults = Faults()
    backends = faulty(world, faults)
    sagas = world.orchestrator(backends=backends)
    saga_id = await sagas.create_saga("order", order_steps(world))
    await sagas.execute_saga(saga_id)
    faults.crash_in_remove.add(f"{saga_id}/cache")
    with pytest.raises(SimulatedCrash):
        await sagas.compensate_saga(saga_id)
    assert (await sagas.state(saga_id)).status is SagaStatus.COMPENSATING
    state = await world.orchestrator(backends=backends).resume_saga(saga_id)
    assert state.status is SagaStatus.COMPENSATED
    assert [k for k in await _kinds(sagas, saga_id) if k[0].startswith("compensat")] == [
        ("compensation_started", None),
        ("compensation_pending", "receipt"), ("compensated", "receipt"),
        ("compensation_pending", "cache"),
        ("compensation_pending", "cache"), ("compensated", "cache"),
        ("compensation_pending", "reserve"), ("compensated", "reserve")]
    assert await world.user_pool.fetchval("SELECT count(*) FROM stock_reservations") == 0
    assert not any(b.violations for b in backends.values())


async def test_a_backend_that_stays_down_is_retried_then_compensated_and_the_saga_fails(
        world: SagaWorld, valkey_server):
    client = redis.Redis.from_url(f"redis://127.0.0.1:{valkey_server.port}/0",
                                  socket_timeout=0.5, socket_connect_timeout=0.5)
    valkey_server.stop()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sagas = world.orchestrator(backends={**world.backends, "kv": KeyValueBackend(client)},
                               retry_base_delay=0.25, sleep=sleep)
    try:
        saga_id = await sagas.create_saga("order", order_steps(world))
        state = await sagas.execute_saga(saga_id)
    finally:
        await client.aclose()
    assert state.status is SagaStatus.FAILED
    assert slept == [0.25, 0.5, 0.25, 0.5]  # the step's retries, then its compensation's
    assert state.reasons[0].startswith("step cache failed after 3 attempts: BackendUnavailable")
    assert state.reasons[1].startswith("compensation of step cache failed after 3 attempts")
    assert state.step("reserve").status.value == "compensated"
    assert state.step("receipt").status.value == "waiting"
    assert await world.user_pool.fetchval("SELECT count(*) FROM stock_reservations") == 0


async def test_two_drivers_racing_for_one_saga_apply_each_effect_once(world: SagaWorld):
    faults = Faults()
    backends = faulty(world, faults)
    first, second = world.orchestrator(backends=backends), world.orchestrator(backends=backends)
    saga_id = await first.create_saga("order", order_steps(world))
    faults.entered[f"{saga_id}/reserve"] = entered = asyncio.Event()
    faults.block[f"{saga_id}/reserve"] = release = asyncio.Event()
    running = asyncio.create_task(first.execute_saga(saga_id))
    await asyncio.wait_for(entered.wait(), 5)
    with pytest.raises(SagaBusy):
        await second.resume_saga(saga_id)
    release.set()
    assert (await running).status is SagaStatus.COMPLETED
    assert set(total(backends, "effects").values()) == {1}


async def test_without_the_lock_the_stream_version_stops_the_second_driver(world: SagaWorld):
    class NoLock:
        @asynccontextmanager
        async def hold(self, saga_id: str) -> AsyncIterator[bool]:
            yield True

    faults = Faults()
    backends = faulty(world, faults)
    first = world.orchestrator(backends=backends, locks=NoLock())
    second = world.orchestrator(backends=backends, locks=NoLock())
    saga_id = await first.create_saga("order", order_steps(world))
    faults.entered[f"{saga_id}/reserve"] = entered = asyncio.Event()
    faults.block[f"{saga_id}/reserve"] = release = asyncio.Event()
    running = asyncio.create_task(first.execute_saga(saga_id))
    await asyncio.wait_for(entered.wait(), 5)
    # The second driver's own step_pending lands; the first one's outcome then cannot.
    second_run = asyncio.create_task(second.resume_saga(saga_id))
    await asyncio.sleep(0.2)
    release.set()
    results = await asyncio.gather(running, second_run, return_exceptions=True)
    assert sum(isinstance(r, SagaBusy) for r in results) == 1
    assert set(total(backends, "effects").values()) == {1}


async def test_an_abort_during_execution_stops_it_and_compensates_what_ran(world: SagaWorld,
                                                                          tmp_path: Path):
    faults = Faults()
    backends = faulty(world, faults)
    sagas = world.orchestrator(backends=backends)
    saga_id = await sagas.create_saga("order", order_steps(world))
    faults.entered[f"{saga_id}/cache"] = entered = asyncio.Event()
    faults.block[f"{saga_id}/cache"] = release = asyncio.Event()
    running = asyncio.create_task(sagas.execute_saga(saga_id))
    await asyncio.wait_for(entered.wait(), 5)
    aborted = await world.orchestrator(backends=backends).abort_saga(saga_id, "customer left")
    assert aborted.aborted and aborted.status is SagaStatus.RUNNING  # the driver compensates
    release.set()
    state = await running
    assert state.status is SagaStatus.COMPENSATED
    assert "aborted: customer left" in state.reasons
    assert state.step("receipt").status.value == "waiting"
    assert total(backends, "removals") == {f"{saga_id}/cache": 1, f"{saga_id}/reserve": 1}
    assert await world.redis.get(f"{world.prefix}:order:o-1") is None
    assert not any(b.violations for b in backends.values())
