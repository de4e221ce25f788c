"""Many ledgers in one server: LEDGERS ledgers, each with its own writer, CALLERS callers each.

Each ledger's writer is a process of its own (canonlog.open(), as one writer
service per ledger would run), with CALLERS closed-loop callers appending one event
per call. The writers start, warm up, and wait; all are released at once, and the
aggregate throughput is every ledger's events over the span from the first
release to the last caller's end. The same measurement with one ledger, in the
same run and the same server, gives the ratio: how far scaling out by ledger goes
on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from bench.aggregate import CALLERS, LEDGERS, Row
from bench.measure import Measurement, Stopwatch, percentile, rss_bytes
from bench.peers import CanonlogSystem, Stream, Target

#: Events each ledger's callers append in the timed section (full, quick).
EVENTS_PER_LEDGER = (20_480, 512)
ROOT = Path(__file__).resolve().parent.parent


class _Runner(Protocol):
    """What bench.run's Runner offers this workload."""

    work: Path
    quick: bool
    rows: list[Row]

    def target(self, database: str) -> dict[str, Any]: ...
    def failed(self, what: str, exc: BaseException) -> None: ...


class _LedgerWriter(CanonlogSystem):
    """canonlog.open() on a ledger of its own, with a writer id of its own."""

    def __init__(self, ledger: str) -> None:
        super().__init__()
        self.ledger = ledger

    async def open(self, target: Target, connections: int) -> None:
        import canonlog
        from canonlog.infrastructure.bootstrap import configure_logging

        settings = canonlog.Settings(dsn=target.app_uri, admin_dsn=target.admin_uri,
                                     data_dir=target.work_dir / self.ledger, log_level="error",
                                     ledger=self.ledger, writer_id=f"writer-{self.ledger}")
        configure_logging(settings)
        self._client = await self._stack.enter_async_context(canonlog.open(settings))


async def ledger_writer(job: dict[str, Any]) -> dict[str, Any]:
    """One ledger's writer and callers (a bench.child job): warms up, says it is ready,
    waits for the go file, then appends and reports its span and latencies."""
    data = job["target"]
    target = Target(data["admin_uri"], data["app_uri"], Path(data["work_dir"]),
                    data["postmaster_pid"])
    system = _LedgerWriter(job["ledger"])
    await system.open(target, 1)
    streams = [Stream(f"order-{i}") for i in range(job["callers"])]
    latencies: list[float] = []

    async def caller(stream: Stream) -> None:
        own, clock = [], time.perf_counter
        for _ in range(job["calls"]):
            started = clock()
            await system.append(stream, 1)
            own.append(clock() - started)
        latencies.extend(own)

    try:
        await asyncio.gather(*(system.append(s, 1) for s in streams))  # warm-up
        await asyncio.to_thread(Path(job["ready"]).touch)
        go = Path(job["go"])
        # Another process releases every writer at once by creating the go file.
        while not await asyncio.to_thread(go.exists):  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        cpu, started = time.process_time(), time.time()
        await asyncio.gather(*(caller(s) for s in streams))
        ended = time.time()
        cpu = time.process_time() - cpu
        stored = await system.stored()
    finally:
        await system.close()
    events = job["callers"] * job["calls"]
    if stored != events + job["callers"]:
        raise SystemExit(f"{job['ledger']} stored {stored} events, not {events + job['callers']}")
    return {"started": started, "ended": ended, "events": events, "latencies": latencies,
            "client_cpu": cpu, "peak_rss_mb": round(rss_bytes("VmHWM") / 2**20, 1)}


def measure(runner: _Runner, run: int, postmaster_pid: int | None,
            fresh: Callable[[str], AbstractContextManager[str]]) -> None:
    """One ledger, then LEDGERS ledgers, each in a fresh database (fresh(name) makes one and
    drops it after); adds a Row each."""
    for count in (1, LEDGERS):
        key = f"ledgers-{count}"
        try:
            with fresh(f"bench_ledgers_{count}_{run}") as database:
                measurement = _ledgers(runner, database, count, postmaster_pid, run)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            runner.failed(f"{key} run {run}", exc)
            continue
        runner.rows.append(Row(run, key, "canonlog", f"canonlog ({count} writer processes)",
                               measurement, {"ledgers": count, "callers": CALLERS * count,
                                             "per_call": 1,
                                             "calls": measurement["events"] // (CALLERS * count)}))
        print(f"    {count} ledger(s), {CALLERS} callers each      "
              f"{measurement['events_per_s']:>10,.0f} events/s   "
              f"p99 {measurement['p99_ms']:8.2f} ms", file=sys.stderr, flush=True)


def _ledgers(runner: _Runner, database: str, count: int, postmaster_pid: int | None,
             run: int) -> dict[str, Any]:
    work = runner.work / f"ledgers-{count}-{run}"
    work.mkdir(parents=True, exist_ok=True)
    go = work / "go"
    calls = max(1, EVENTS_PER_LEDGER[1 if runner.quick else 0] // CALLERS)
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            job = {"kind": "ledger-writer", "target": runner.target(database),
                   "ledger": f"bench-{run}-{count}-{index}", "callers": CALLERS, "calls": calls,
                   "ready": str(work / f"ready-{index}"), "go": str(go)}
            job_path, result_path = work / f"job-{index}.json", work / f"result-{index}.json"
            job_path.write_text(json.dumps(job), "utf-8")
            processes.append((subprocess.Popen(
                [sys.executable, "-m", "bench.child", str(job_path), str(result_path)],
                cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"}), result_path))
        deadline = time.monotonic() + 300
        while not all((work / f"ready-{i}").exists() for i in range(count)):
            if any(p.poll() is not None for p, _ in processes) or time.monotonic() > deadline:
                raise RuntimeError("a ledger's writer stopped or did not get ready")
            time.sleep(0.01)
        watch = Stopwatch(postmaster_pid)
        watch.start()
        go.touch()
        for process, _ in processes:
            if process.wait(timeout=600) != 0:
                raise RuntimeError(f"a ledger's writer exited with {process.returncode}")
        watch.stop()
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = [json.loads(path.read_text("utf-8")) for _, path in processes]
    return _aggregate(results, watch)


def _aggregate(results: list[dict[str, Any]], watch: Stopwatch) -> dict[str, Any]:
    events = sum(r["events"] for r in results)
    seconds = max(max(r["ended"] for r in results) - min(r["started"] for r in results), 1e-9)
    latencies = sorted(x for r in results for x in r["latencies"])

    def ms(share: float) -> float:
        return round(percentile(latencies, share) * 1000, 3)

    server = watch.server_cpu
    return Measurement(
        events=events, calls=len(latencies), seconds=round(seconds, 4),
        events_per_s=round(events / seconds, 1), p50_ms=ms(0.5), p95_ms=ms(0.95),
        p99_ms=ms(0.99),
        client_cpu_us_per_event=round(sum(r["client_cpu"] for r in results) / events * 1e6, 2),
        server_cpu_us_per_event=None if server is None else round(server / events * 1e6, 2),
        peak_rss_mb=max(r["peak_rss_mb"] for r in results),
    ).to_json()
