"""The append workloads, and the closed-loop callers that drive a system through one."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.measure import Measurement, Stopwatch
from bench.peers import AsyncSystem, Stream, ThreadedSystem

#: The most connections any peer gets: raw, canonlog-direct and eventsourcing at
#: 16, 64 callers all share 16, the reference the issue's goals are stated against.
MAX_CONNECTIONS = 16
ALL_SYSTEMS = ("raw", "canonlog", "canonlog-direct", "eventsourcing")


@dataclass(frozen=True, slots=True)
class Plan:
    """How one system runs one workload: callers, events per call, calls per caller."""

    system: str
    callers: int
    per_call: int
    calls: int
    connections: int
    warmup_calls: int
    label: str

    @property
    def events(self) -> int:
        return self.callers * self.per_call * self.calls

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Workload:
    """Callers each appending per_call events per call, events in total (full, quick)."""

    key: str
    title: str
    callers: int
    per_call: int
    events: tuple[int, int]
    systems: tuple[str, ...] = ALL_SYSTEMS
    #: (callers, per_call) of raw when it is measured in another shape as the reference.
    raw_shape: tuple[int, int] | None = None

    def plan(self, system: str, *, quick: bool) -> Plan:
        callers, per_call = self.callers, self.per_call
        label = system
        if system == "raw" and self.raw_shape is not None:
            callers, per_call = self.raw_shape
            label = f"raw ({callers} caller, batches of {per_call})"
        elif system == "raw" and callers > MAX_CONNECTIONS:
            label = f"raw ({MAX_CONNECTIONS} connections)"
        total = self.events[1] if quick else self.events[0]
        calls = max(1, total // (callers * per_call))
        warmup = 1 if callers > 1 else max(1, calls // 20)
        return Plan(system, callers, per_call, calls, min(callers, MAX_CONNECTIONS), warmup, label)


WORKLOADS: tuple[Workload, ...] = (
    Workload("single", "1 caller, 1 event per call", 1, 1, (2_000, 40)),
    Workload("callers-16", "16 callers, 1 event per call", 16, 1, (4_000, 64)),
    Workload("callers-64", "64 callers, 1 event per call", 64, 1, (6_400, 128)),
    Workload("callers-1024", "1,024 callers, 1 event per call", 1024, 1, (30_720, 1_024),
             systems=("raw", "canonlog"), raw_shape=(1, 100)),
    Workload("batch-10", "1 caller, batches of 10", 1, 10, (6_000, 100)),
    Workload("batch-100", "1 caller, batches of 100", 1, 100, (30_000, 400)),
)


async def drive_async(system: AsyncSystem, plan: Plan, watch: Stopwatch) -> Measurement:
    """Runs plan.callers tasks, each making plan.calls calls after its warm-up calls."""
    streams = [Stream(f"order-{i}") for i in range(plan.callers)]
    latencies: list[float] = []

    async def warm_up(stream: Stream) -> None:
        for _ in range(plan.warmup_calls):
            await system.append(stream, plan.per_call)

    async def caller(stream: Stream) -> None:
        own: list[float] = []
        clock = time.perf_counter
        for _ in range(plan.calls):
            started = clock()
            await system.append(stream, plan.per_call)
            own.append(clock() - started)
        latencies.extend(own)

    await asyncio.gather(*(warm_up(s) for s in streams))
    watch.start()
    await asyncio.gather(*(caller(s) for s in streams))
    watch.stop()
    return watch.measurement(plan.events, latencies)


def drive_threads(system: ThreadedSystem, plan: Plan, watch: Stopwatch) -> Measurement:
    """Runs plan.callers threads against a synchronous API, otherwise as drive_async."""
    streams = [Stream(f"order-{i}") for i in range(plan.callers)]
    warmed = threading.Barrier(plan.callers + 1)
    go = threading.Event()
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def caller(stream: Stream) -> None:
        try:
            for _ in range(plan.warmup_calls):
                system.append(stream, plan.per_call)
        except BaseException as exc:
            errors.append(exc)
            warmed.abort()
            return
        try:
            warmed.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        own: list[float] = []
        clock = time.perf_counter
        try:
            for _ in range(plan.calls):
                started = clock()
                system.append(stream, plan.per_call)
                own.append(clock() - started)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=caller, args=(s,), daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        warmed.wait()
    if not errors:
        watch.start()
    go.set()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    watch.stop()
    return watch.measurement(plan.events, latencies)
