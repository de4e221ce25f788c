"""A backend wrapper for fault tests: it checks write-ahead, counts effects, and fails
or crashes where a test says."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field

from canonlog.application.client import LedgerClient
from canonlog.application.ports import SagaBackend, StepOutcome
from canonlog.domain.errors import BackendUnavailable
from canonlog.domain.saga import SagaStep, saga_stream


class SimulatedCrash(BaseException):
    """The process dies here: nothing after it runs, no handler catches it."""


@dataclass
class Faults:
    """What to do to which idempotency key, each consumed as it fires."""

    crash_before: set[str] = field(default_factory=set)
    crash_after: set[str] = field(default_factory=set)
    crash_in_remove: set[str] = field(default_factory=set)
    unavailable: Counter[str] = field(default_factory=Counter)
    remove_unavailable: Counter[str] = field(default_factory=Counter)
    block: dict[str, asyncio.Event] = field(default_factory=dict)
    entered: dict[str, asyncio.Event] = field(default_factory=dict)


class FaultyBackend:
    """Wraps a real backend. `effects` counts each key the backend really applied and
    `removals` each real remove; `violations` lists effects with no pending event
    right before them in the saga's stream."""

    def __init__(self, inner: SagaBackend, client: LedgerClient, faults: Faults) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.operations = inner.operations
        self._client = client
        self.faults = faults
        self.effects: Counter[str] = Counter()
        self.removals: Counter[str] = Counter()
        self.violations: list[str] = []

    async def _last_event(self, step: SagaStep) -> tuple[str, str | None]:
        saga_id = step.idempotency_key.split("/")[0]
        last = (await self._client.read_stream(saga_stream(saga_id)))[-1]
        return last.event_type, json.loads(last.payload).get("step_id")

    async def apply(self, step: SagaStep) -> StepOutcome:
        key, f = step.idempotency_key, self.faults
        if await self._last_event(step) != ("step_pending", step.step_id):
            self.violations.append(f"effect of {key} without its pending event before it")
        if key in f.entered:
            f.entered[key].set()
        if key in f.block:
            await f.block.pop(key).wait()
        if key in f.crash_before:
            f.crash_before.discard(key)
            raise SimulatedCrash(key)
        if f.unavailable[key] > 0:
            f.unavailable[key] -= 1
            raise BackendUnavailable(f"{key}: simulated outage")
        outcome = await self.inner.apply(step)
        if outcome.applied:
            self.effects[key] += 1
        if key in f.crash_after:
            f.crash_after.discard(key)
            raise SimulatedCrash(key)
        return outcome

    async def remove(self, step: SagaStep) -> None:
        key, f = step.idempotency_key, self.faults
        if await self._last_event(step) != ("compensation_pending", step.step_id):
            self.violations.append(f"compensation of {key} without its pending event")
        if f.remove_unavailable[key] > 0:
            f.remove_unavailable[key] -= 1
            raise BackendUnavailable(f"{key}: simulated outage")
        await self.inner.remove(step)
        self.removals[key] += 1
        if key in f.crash_in_remove:
            f.crash_in_remove.discard(key)
            raise SimulatedCrash(key)
