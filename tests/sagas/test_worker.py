"""The recovery worker: it finds unfinished sagas in the chain, resumes each under its
lock, and every log line of a saga names the saga, the step and the trace."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import structlog

from canonlog.application.saga_recovery import SagaIndex, SagaRecoveryWorker
from canonlog.domain.saga import SagaStatus
from tests.sagas.conftest import SagaWorld, order_steps
from tests.sagas.faulty import Faults, FaultyBackend, SimulatedCrash


async def _left_pending(world: SagaWorld, backends: dict[str, FaultyBackend],
                        faults: Faults) -> str:
    sagas = world.orchestrator(backends=backends)
    saga_id = await sagas.create_saga("order", order_steps(world), trace_id="trace-9")
    faults.crash_after.add(f"{saga_id}/reserve")
    with pytest.raises(SimulatedCrash):
        await sagas.execute_saga(saga_id)
    return saga_id


async def test_two_workers_racing_resume_each_stale_saga_once(world: SagaWorld):
    faults = Faults()
    backends = {n: FaultyBackend(b, world.client, faults) for n, b in world.backends.items()}
    saga_id = await _left_pending(world, backends, faults)
    faults.entered[f"{saga_id}/reserve"] = entered = asyncio.Event()
    faults.block[f"{saga_id}/reserve"] = release = asyncio.Event()
    workers = [SagaRecoveryWorker(world.orchestrator(backends=backends),
                                  SagaIndex(world.event_log, "main"),
                                  stale_after=0.001, interval=1.0) for _ in range(2)]
    first = asyncio.create_task(workers[0].run_once())
    await asyncio.wait_for(entered.wait(), 5)
    second = await workers[1].run_once()
    release.set()
    assert ((await first).resumed, second.busy) == (1, 1)
    assert backends["relational"].effects == {f"{saga_id}/reserve": 1}
    index = SagaIndex(world.event_log, "main")
    await index.refresh()
    assert [s.saga_id for s in index.sagas(SagaStatus.COMPLETED)] == [saga_id]
    assert index.stale(timedelta(0)) == []


async def test_a_young_saga_is_left_to_its_driver(world: SagaWorld):
    faults = Faults()
    backends = {n: FaultyBackend(b, world.client, faults) for n, b in world.backends.items()}
    await _left_pending(world, backends, faults)
    worker = SagaRecoveryWorker(world.orchestrator(backends=backends),
                                SagaIndex(world.event_log, "main"), stale_after=3600, interval=1)
    assert (await worker.run_once()).resumed == 0


async def test_every_log_line_of_a_saga_names_it_its_step_and_its_trace(world: SagaWorld):
    captured = structlog.testing.LogCapture()
    old = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, captured])
    try:
        sagas = world.orchestrator()
        saga_id = await sagas.create_saga("order", order_steps(world), trace_id="trace-7")
        await sagas.execute_saga(saga_id)
    finally:
        structlog.configure(**old)
    lines = [e for e in captured.entries if e["event"].startswith("saga")]
    assert len(lines) == 5
    assert all(e["saga_id"] == saga_id and e["trace_id"] == "trace-7" for e in lines)
    steps = [e["step_id"] for e in lines if e["event"] == "saga step succeeded"]
    assert steps == ["reserve", "cache", "receipt"]


async def test_a_saga_whose_backend_breaks_does_not_stop_the_worker(world: SagaWorld):
    class Broken:
        kind, operations = "file", frozenset({"write"})

        async def apply(self, step):
            raise RuntimeError("a bug in a backend")

        async def remove(self, step):
            return None

    sagas = world.orchestrator(backends={**world.backends, "file": Broken()})
    saga_id = await sagas.create_saga("order", order_steps(world))
    worker = SagaRecoveryWorker(sagas, SagaIndex(world.event_log, "main"), stale_after=0.001,
                                interval=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    for _ in range(200):
        if worker.passes >= 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await running
    assert worker.failing and "RuntimeError: a bug in a backend" in (worker.last_error or "")
    assert (await sagas.state(saga_id)).step("receipt").status.value == "pending"
