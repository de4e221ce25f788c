"""A Hypothesis state machine that creates, drives, aborts and compensates sagas on real
PostgreSQL and Valkey while failures and crashes strike at random steps.

Every saga ends completed, compensated or failed; each effect the stores hold is
accounted for by the saga's state; no effect ran without its pending event right
before it in the chain, and none ran twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from canonlog.application.sagas import SagaOrchestrator
from canonlog.domain.errors import SagaStateConflict
from canonlog.domain.saga import TERMINAL, SagaStatus, StepStatus
from tests.sagas.conftest import SagaWorld, order_steps, saga_world
from tests.sagas.faulty import Faults, FaultyBackend, SimulatedCrash

T = TypeVar("T")
FAULTS = ("none", "crash_before", "crash_after", "down_once", "down_always", "crash_in_remove",
          "remove_down_once", "remove_down_always")


class SagaMachine(RuleBasedStateMachine):
    world: SagaWorld
    loop: asyncio.AbstractEventLoop
    sagas = Bundle("sagas")

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def start(self) -> None:
        self.faults = Faults()
        self.backends = {name: FaultyBackend(b, self.world.client, self.faults)
                         for name, b in self.world.backends.items()
                         if name in ("relational", "kv", "file")}
        self.created: list[str] = []

    def orchestrator(self) -> SagaOrchestrator:
        return self.world.orchestrator(backends=self.backends)

    @rule(target=sagas, faults=st.lists(st.sampled_from(FAULTS), min_size=3, max_size=3))
    def create(self, faults: list[str]) -> str:
        order = uuid.uuid4().hex[:8]
        saga_id = self.run(self.orchestrator().create_saga("order", order_steps(self.world, order)))
        f = self.faults
        for step_id, fault in zip(("reserve", "cache", "receipt"), faults, strict=True):
            key = f"{saga_id}/{step_id}"
            if fault in ("crash_before", "crash_after", "crash_in_remove"):
                getattr(f, fault).add(key)
            elif fault.startswith("down"):
                f.unavailable[key] = 1 if fault == "down_once" else 100
            elif fault.startswith("remove_down"):
                f.remove_unavailable[key] = 1 if fault == "remove_down_once" else 100
        self.created.append(saga_id)
        return saga_id

    @rule(saga=sagas)
    def drive(self, saga: str) -> None:
        with contextlib.suppress(SimulatedCrash):
            self.run(self.orchestrator().resume_saga(saga))

    @rule(saga=sagas)
    def abort(self, saga: str) -> None:
        with contextlib.suppress(SimulatedCrash, SagaStateConflict):
            self.run(self.orchestrator().abort_saga(saga, "test"))

    @rule(saga=sagas)
    def compensate(self, saga: str) -> None:
        with contextlib.suppress(SimulatedCrash, SagaStateConflict):
            self.run(self.orchestrator().compensate_saga(saga))

    def check_effects(self) -> None:
        for backend in self.backends.values():
            assert not backend.violations, backend.violations
            assert all(n == 1 for n in backend.effects.values()), backend.effects

    def teardown(self) -> None:
        try:
            for saga_id in self.created:
                for _ in range(10):  # each crash fires once; a few resumes end any saga
                    try:
                        state = self.run(self.orchestrator().resume_saga(saga_id))
                        break
                    except SimulatedCrash:
                        continue
                assert state.status in TERMINAL
                self.run(self.account_for(saga_id))
            self.check_effects()
        finally:
            self.created.clear()

    async def account_for(self, saga_id: str) -> None:
        state = await self.orchestrator().state(saga_id)
        for step in state.steps:
            present = await self.present(step.step.backend, step.step.idempotency_key,
                                         step.step.payload_object())
            if present:
                kept = step.status is StepStatus.SUCCEEDED and state.status is SagaStatus.COMPLETED
                given_up = step.status in (StepStatus.COMPENSATION_FAILED,
                                           StepStatus.COMPENSATION_PENDING) and any(
                    f"compensation of step {step.step.step_id} " in r
                    for r in state.reasons)
                assert kept or given_up, (saga_id, step)
            elif state.status is SagaStatus.COMPLETED:
                raise AssertionError(f"{saga_id}: completed but {step.step.step_id} is missing")

    async def present(self, backend: str, key: str, payload: dict[str, Any]) -> bool:
        if backend == "relational":
            return bool(await self.world.user_pool.fetchval(
                "SELECT count(*) FROM stock_reservations WHERE saga_key = $1", key))
        if backend == "kv":
            return bool(await self.world.redis.exists(payload["key"]))
        return (self.world.files / payload["path"]).exists()


@pytest.fixture
def machine_world(database: Any, user_db: Any, redis_url: str, tmp_path: Path):
    loop = asyncio.new_event_loop()
    context = saga_world(database.app, user_db, redis_url, tmp_path / "files")
    world = loop.run_until_complete(context.__aenter__())
    try:
        yield world, loop
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def test_sagas_under_random_failures_and_crashes_end_accounted_for(machine_world):
    world, loop = machine_world
    SagaMachine.world, SagaMachine.loop = world, loop
    run_state_machine_as_test(SagaMachine, settings=settings(
        max_examples=8, stateful_step_count=10, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck)))
