"""One measurement in a process of its own: `python -m bench.child JOB.json RESULT.json`.

A fresh process per measurement keeps the systems from sharing a heap, threads
or an event loop, and makes its peak RSS that of one system in one workload.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.many_ledgers import ledger_writer
from bench.measure import Stopwatch, rss_bytes
from bench.peers import ASYNC_SYSTEMS, LEDGER, THREADED_SYSTEMS, CanonlogSystem, Stream, Target
from bench.workloads import Plan, drive_async, drive_threads
from canonlog.application.verification import verify_ledger
from canonlog.infrastructure.export import export_events, export_ledger
from canonlog.infrastructure.parallel_verification import (
    DB_RANGE_EVENTS,
    ParallelChainChecker,
    read_rows,
    verify_export_file,
)
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

#: Callers and events per call that fill a ledger quickly (build and memory jobs).
FILL_CALLERS = 16
FILL_BATCH = 100


def _target(job: dict[str, Any]) -> Target:
    data = job["target"]
    return Target(data["admin_uri"], data["app_uri"], Path(data["work_dir"]),
                  data["postmaster_pid"])


async def _append(job: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(**job["plan"])
    target = _target(job)
    watch = Stopwatch(target.postmaster_pid)
    if plan.system in THREADED_SYSTEMS:
        threaded = THREADED_SYSTEMS[plan.system]()
        await asyncio.to_thread(threaded.open, target, plan.connections)
        try:
            result = await asyncio.to_thread(drive_threads, threaded, plan, watch)
            stored = await asyncio.to_thread(threaded.stored)
        finally:
            await asyncio.to_thread(threaded.close)
    else:
        system = ASYNC_SYSTEMS[plan.system]()
        await system.open(target, plan.connections)
        try:
            result = await drive_async(system, plan, watch)
            stored = await system.stored()
        finally:
            await system.close()
    expected = plan.events + plan.callers * plan.per_call * plan.warmup_calls
    if stored != expected:
        raise SystemExit(f"{plan.system} stored {stored} events, not the {expected} appended")
    return {"measurement": result.to_json()}


async def _fill(
    system: CanonlogSystem, events: int, on_progress: Callable[[int], None] | None = None
) -> tuple[int, float]:
    """Appends about `events` events in batches from FILL_CALLERS callers; returns how
    many it appended and the seconds it took."""
    per_caller = max(1, events // (FILL_CALLERS * FILL_BATCH))
    done = 0

    async def caller(index: int) -> None:
        nonlocal done
        stream = Stream(f"fill-{index}")
        for _ in range(per_caller):
            await system.append(stream, FILL_BATCH)
            done += FILL_BATCH
            if on_progress is not None:
                on_progress(done)

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(FILL_CALLERS)))
    return done, time.perf_counter() - started


async def _build(job: dict[str, Any]) -> dict[str, Any]:
    """Fills a ledger for the verification workloads and exports it to a file."""
    target = _target(job)
    system = CanonlogSystem()
    await system.open(target, 1)
    try:
        _, fill_seconds = await _fill(system, job["events"])
    finally:
        await system.close()
    log = await AsyncpgEventLog.connect(target.app_uri)
    out = await asyncio.to_thread(Path(job["export"]).open, "w", encoding="utf-8")
    try:
        started = time.perf_counter()
        exported = await export_ledger(log, LEDGER, out)
        export_seconds = time.perf_counter() - started
        size = out.tell()
    finally:
        out.close()
        await log.close()
    return {"events": exported, "fill_seconds": round(fill_seconds, 3),
            "export_seconds": round(export_seconds, 3), "export_bytes": size}


class _RssTrail:
    """RSS samples taken as a long operation reports progress."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = [(0, rss_bytes() / 2**20)]

    def __call__(self, done: int) -> None:
        self.samples.append((done, round(rss_bytes() / 2**20, 1)))

    def summary(self) -> dict[str, Any]:
        start, end = self.samples[0], self.samples[-1]
        middle = min(self.samples, key=lambda s: abs(s[0] - end[0] / 2))
        return {"rss_start_mb": round(start[1], 1), "rss_middle_mb": middle[1],
                "rss_end_mb": end[1], "rss_max_mb": max(s[1] for s in self.samples),
                "samples": len(self.samples)}


async def _verify_db(job: dict[str, Any]) -> dict[str, Any]:
    """Verifies the ledger from genesis in job['processes'] processes, as `canonlog verify`."""
    target = _target(job)
    log = await AsyncpgEventLog.connect(target.app_uri)
    checker = ParallelChainChecker(target.app_uri, job["processes"])
    try:
        trail = _RssTrail()
        watch = Stopwatch(target.postmaster_pid)
        watch.start()
        report = (await verify_ledger(log, LEDGER, progress=trail, checker=checker)).chain
        watch.stop()
    finally:
        await log.close()
    if not report.ok:
        raise SystemExit(f"verification failed: {report.summary()}")
    return {"measurement": watch.measurement(report.events_checked, []).to_json(),
            "memory": trail.summary()}


async def _read_db(job: dict[str, Any]) -> dict[str, Any]:
    """Reads the rows verification reads, with the same driver and query, and nothing else."""
    target = _target(job)
    log = await AsyncpgEventLog.connect(target.app_uri)
    try:
        head = (await log.head(LEDGER)).sequence
    finally:
        await log.close()
    trail = _RssTrail()
    watch = Stopwatch(target.postmaster_pid)
    watch.start()
    count = 0
    for low in range(0, head, DB_RANGE_EVENTS):
        count += sum(1 for _ in read_rows(target.app_uri, LEDGER, low, min(low + DB_RANGE_EVENTS,
                                                                            head)))
        trail(count)
    watch.stop()
    if count != head:
        raise SystemExit(f"read {count} rows, not {head}")
    return {"measurement": watch.measurement(count, []).to_json(), "memory": trail.summary()}


async def _verify_export(job: dict[str, Any]) -> dict[str, Any]:
    trail = _RssTrail()
    watch = Stopwatch(None)  # no database involved
    watch.start()
    path = Path(job["export"])
    ledger, _ = export_events(path)
    report, _ = verify_export_file(path, ledger, processes=job["processes"], progress=trail)
    watch.stop()
    if not report.ok:
        raise SystemExit(f"verification failed: {report.summary()}")
    return {"measurement": watch.measurement(report.events_checked, []).to_json(),
            "memory": trail.summary()}


async def _memory(job: dict[str, Any]) -> dict[str, Any]:
    """Appends job['events'] events through one LedgerClient, sampling the writer's RSS."""
    target = _target(job)
    system = CanonlogSystem()
    await system.open(target, 1)
    total = job["events"]
    every = max(FILL_BATCH, total // 40)
    trail = _RssTrail()
    next_sample = every
    marks = {total // 4: "25%", total // 2: "50%", 3 * total // 4: "75%"}

    def progress(done: int) -> None:
        nonlocal next_sample
        if done >= next_sample:
            next_sample += every
            trail(done)
            for mark in [m for m in marks if done >= m]:
                print(f"    memory run: {marks.pop(mark)} ({done:,} events)", file=sys.stderr)

    try:
        total, seconds = await _fill(system, total, progress)
        trail(total)
    finally:
        await system.close()
    return {"events": total, "seconds": round(seconds, 2),
            "events_per_s": round(total / seconds, 1), "memory": trail.summary(),
            "trail": trail.samples}


JOBS = {"append": _append, "build": _build, "verify-db": _verify_db, "read-db": _read_db,
        "verify-export": _verify_export, "memory": _memory, "ledger-writer": ledger_writer}


def main() -> None:
    job_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    job = json.loads(job_path.read_text("utf-8"))
    result = asyncio.run(JOBS[job["kind"]](job))
    result_path.write_text(json.dumps(result), "utf-8")


if __name__ == "__main__":
    main()
