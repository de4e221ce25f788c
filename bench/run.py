"""Runs the benchmark: `python -m bench.run [--quick] [--dsn DSN] [--output-dir bench]`.

One PostgreSQL server for the whole run (an embedded one in a temporary
directory unless --dsn names a superuser connection), a fresh database for
every measurement, and a process of its own for every measurement
(bench/child.py). Every workload runs --runs times, interleaved, so that a
noisy neighbour skews all systems alike; results are medians. Writes
results.json and RESULTS.md to the output directory and progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench import many_ledgers
from bench.aggregate import LEDGERS, Row, summarise
from bench.environment import machine_info, package_versions
from bench.peers import raw_query
from bench.report import evaluate_goals, render
from bench.server import (
    APP_ROLE,
    Cluster,
    build_canonlog_template,
    build_raw_template,
    create_database,
    drop_database,
    find_postmaster,
    server_info,
    settle,
    start_cluster,
)
from bench.workloads import WORKLOADS, Plan
from canonlog.infrastructure.bootstrap import configure_logging
from canonlog.infrastructure.parallel_verification import default_processes
from canonlog.infrastructure.settings import Settings

CANONLOG_TEMPLATE = "bench_canonlog_template"
RAW_TEMPLATE = "bench_raw_template"
ROOT = Path(__file__).resolve().parent.parent
#: Events of the verification ledger and of the writer's memory run (full, quick).
VERIFY_EVENTS = (200_000, 2_000)
MEMORY_EVENTS = (1_000_000, 20_000)
T = TypeVar("T")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sync(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Runner:
    """Creates each measurement's database, runs its child process, collects the results."""

    def __init__(self, cluster: Cluster, work: Path, *, quick: bool) -> None:
        self.cluster = cluster
        self.work = work
        self.quick = quick
        self.rows: list[Row] = []
        self.errors: list[dict[str, str]] = []
        self._counter = itertools.count(1)

    def target(self, database: str) -> dict[str, Any]:
        admin = self.cluster.admin.on(database)
        return {
            "admin_uri": admin.uri(),
            "app_uri": admin.as_user(APP_ROLE, self.cluster.app_password).uri(),
            "work_dir": str(self.work / database),
            "postmaster_pid": self.cluster.postmaster_pid,
        }

    def child(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Runs one job in a fresh interpreter, echoing its stderr; raises RuntimeError with
        the tail of its stderr when it fails or outlives `timeout` seconds."""
        number = next(self._counter)
        job_path = self.work / f"job-{number}.json"
        result_path = self.work / f"result-{number}.json"
        job_path.write_text(json.dumps(job), "utf-8")
        tail: deque[str] = deque(maxlen=15)
        with subprocess.Popen(
            [sys.executable, "-m", "bench.child", str(job_path), str(result_path)],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        ) as process:
            watchdog = threading.Timer(timeout, process.kill)
            watchdog.start()
            assert process.stderr is not None
            for line in process.stderr:
                say(line.rstrip())
                tail.append(line.rstrip())
            returncode = process.wait()
            watchdog.cancel()
        if returncode != 0 or not result_path.exists():
            raise RuntimeError(f"exit {returncode}: " + "\n".join(tail))
        result: dict[str, Any] = json.loads(result_path.read_text("utf-8"))
        return result

    def append(self, run: int, workload_key: str, plan: Plan) -> None:
        database = f"bench_{workload_key.replace('-', '_')}_{plan.system.replace('-', '_')}_{run}"
        template = {"raw": RAW_TEMPLATE, "eventsourcing": None}.get(plan.system, CANONLOG_TEMPLATE)
        _sync(create_database(self.cluster, database, template))
        try:
            result = self.child({"kind": "append", "target": self.target(database),
                                 "plan": plan.to_json()}, timeout=600)
        except RuntimeError as exc:
            self.failed(f"{workload_key} {plan.system} run {run}", exc)
            return
        finally:
            _sync(drop_database(self.cluster, database))
        m = result["measurement"]
        self.rows.append(Row(run, workload_key, plan.system, plan.label, m, plan.to_json()))
        say(f"    {plan.label:<36} {m['events_per_s']:>10,.0f} events/s   p99 {m['p99_ms']:8.2f} ms")

    def verification(self, run: int, database: str, export: Path) -> None:
        """Verification in every core's process and in one, and the rows read alone.

        The server is settled first (the append workloads leave it checkpoints and
        autovacuum to do), and the sides compared go first in turn from run to run, so
        that neither meets the server's background work more than the other."""
        cores = default_processes()
        _sync(settle(self.cluster, database))
        order = 1 if run % 2 else -1
        for key, kind, processes, what in (
                *(("verify-db", "verify-db", cores, f"verify database, {cores} processes"),
                  ("verify-db-1", "verify-db", 1, "verify database, 1 process"),
                  ("verify-read-db", "read-db", 1, "read the same rows, 1 process"))[::order],
                *(("verify-export", "verify-export", cores, f"verify export, {cores} processes"),
                  ("verify-export-1", "verify-export", 1, "verify export, 1 process"))[::order]):
            try:
                result = self.child({"kind": kind, "target": self.target(database),
                                     "export": str(export), "processes": processes}, timeout=600)
            except RuntimeError as exc:
                self.failed(f"{key} run {run}", exc)
                continue
            m = result["measurement"]
            self.rows.append(Row(run, key, "canonlog", f"canonlog ({what})",
                                 m | {"processes": processes}, {}, result["memory"]))
            say(f"    {what:<36} {m['events_per_s']:>10,.0f} events/s   "
                f"RSS {result['memory']['rss_start_mb']:.0f} -> {result['memory']['rss_end_mb']:.0f} MB")

    def memory(self, events: int) -> dict[str, Any]:
        say(f"[memory] the writer's RSS over {events:,} events through canonlog")
        _sync(create_database(self.cluster, "bench_memory", CANONLOG_TEMPLATE))
        try:
            memory = self.child({"kind": "memory", "target": self.target("bench_memory"),
                                 "events": events}, timeout=1200)
        except RuntimeError as exc:
            self.failed("memory run", exc)
            return {}
        finally:
            _sync(drop_database(self.cluster, "bench_memory"))
        rss = memory["memory"]
        say(f"    {memory['events']:,} events at {memory['events_per_s']:,.0f} events/s; RSS "
            f"{rss['rss_start_mb']} / {rss['rss_middle_mb']} / {rss['rss_end_mb']} MB")
        return memory

    @contextmanager
    def fresh_database(self, name: str) -> Iterator[str]:
        """A fresh canonlog database for the block, dropped after it."""
        _sync(create_database(self.cluster, name, CANONLOG_TEMPLATE))
        try:
            yield name
        finally:
            _sync(drop_database(self.cluster, name))

    def failed(self, what: str, exc: BaseException) -> None:
        say(f"    FAILED {what}: {exc}")
        self.errors.append({"what": what, "error": str(exc)})


def _available_systems() -> set[str]:
    systems = {"raw", "canonlog", "canonlog-direct"}
    if importlib.util.find_spec("eventsourcing") is not None:
        systems.add("eventsourcing")
    else:
        say("eventsourcing is not installed (pip install -e '.[bench]'); it is left out")
    return systems


def measure(runner: Runner, *, runs: int, only: set[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every workload `runs` times, interleaved; returns the verification ledger and the memory run."""
    index = 1 if runner.quick else 0
    systems = _available_systems()
    verify_db, export = "bench_verify", runner.work / "ledger-export.jsonl"
    build: dict[str, Any] = {}
    if only is None or "verify" in only:
        say(f"building the verification ledger ({VERIFY_EVENTS[index]:,} events) and its export")
        _sync(create_database(runner.cluster, verify_db, CANONLOG_TEMPLATE))
        build = runner.child({"kind": "build", "target": runner.target(verify_db),
                              "events": VERIFY_EVENTS[index], "export": str(export)}, timeout=900)
    for run_number in range(1, runs + 1):
        for workload in WORKLOADS:
            if only is not None and workload.key not in only:
                continue
            say(f"[run {run_number}/{runs}] {workload.title}")
            for system in workload.systems:
                if system in systems:
                    runner.append(run_number, workload.key, workload.plan(system, quick=runner.quick))
        if build:
            say(f"[run {run_number}/{runs}] verification of {build['events']:,} events")
            runner.verification(run_number, verify_db, export)
        if only is None or "ledgers" in only:
            say(f"[run {run_number}/{runs}] {LEDGERS} ledgers in one server against one")
            many_ledgers.measure(runner, run_number, runner.cluster.postmaster_pid,
                                 runner.fresh_database)
    if build:
        _sync(drop_database(runner.cluster, verify_db))
        export.unlink(missing_ok=True)
    memory: dict[str, Any] = {}
    if only is None or "memory" in only:
        memory = runner.memory(MEMORY_EVENTS[index])
    return build, memory


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    runs = args.runs or (1 if args.quick else 3)
    load_before = os.getloadavg()
    configure_logging(Settings(log_level="warning"))
    cluster = _sync(find_postmaster(start_cluster(args.dsn)))
    postgres = _sync(server_info(cluster))
    mode = "quick" if args.quick else "full"
    say(f"PostgreSQL {postgres['version'].split(',')[0]}; {mode} mode, {runs} run(s) per figure")
    work = Path(tempfile.mkdtemp(prefix="canonlog-bench-work-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    runner = Runner(cluster, work, quick=args.quick)
    _sync(build_canonlog_template(cluster, CANONLOG_TEMPLATE))
    _sync(build_raw_template(cluster, RAW_TEMPLATE, raw_query("create_table")))
    try:
        build, memory = measure(runner, runs=runs,
                                only=set(args.only.split(",")) if args.only else None)
    finally:
        for template in (CANONLOG_TEMPLATE, RAW_TEMPLATE):
            _sync(drop_database(cluster, template))
    document: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": mode,
            "runs": runs,
            "duration_s": round(time.monotonic() - started, 1),
            "machine": machine_info(load_before, os.getloadavg()),
            "postgres": postgres,
            "packages": package_versions(),
        },
        "results": summarise(runner.rows),
        "verification_ledger": build,
        "memory": memory,
        "errors": runner.errors,
    }
    document["goals"] = evaluate_goals(document)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    (out / "RESULTS.md").write_text(render(document), "utf-8")
    say(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'} "
        f"in {document['meta']['duration_s']:.0f} s")
    return 1 if runner.errors else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run of tiny counts: checks that the harness works, not speed")
    parser.add_argument("--dsn", help="superuser DSN of the server to use instead of an embedded one")
    parser.add_argument("--output-dir", default=str(ROOT / "bench"),
                        help="where results.json and RESULTS.md go (default: bench/)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--only", help="comma-separated workloads to run (keys: "
                        + ", ".join(w.key for w in WORKLOADS) + ", verify, ledgers, memory)")
    raise SystemExit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
