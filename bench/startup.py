"""Writer startup against ledger length: `python -m bench.startup [--quick] [--dsn DSN]`.

Startup is the time from canonlog.open() to a client that accepts appends: the
durability, login and schema checks, the head compared with the last known one
and with checkpoints, the tail re-verified, the grant taken. The goal is startup
on a 1,000,000-event ledger within 1.2x of startup on a 10,000-event one, so the
two ledgers are filled first and then started alternately, --runs times each, in
one server; the figures are medians and the ratio is taken within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import canonlog
from bench.server import (
    APP_ROLE,
    Cluster,
    build_canonlog_template,
    create_database,
    start_cluster,
)
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.bootstrap import configure_logging
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

LEDGER = "main"
WRITER = "bench-startup"
TEMPLATE = "bench_startup_template"
#: Ledger lengths compared (full, quick), and the goal's bound on their startup ratio.
SIZES = ((10_000, 1_000_000), (1_000, 20_000))
GOAL_RATIO = 1.2
#: Events per append call while filling: ten requests of a hundred.
FILL_REQUESTS, FILL_EVENTS = 10, 100


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def fill(app_uri: str, events: int) -> float:
    """Appends `events` events to the ledger under WRITER's grant, then hands the grant
    over, so that a writer starting next takes it; returns the seconds it took."""
    log = await AsyncpgEventLog.connect(app_uri)
    started = time.perf_counter()
    try:
        grant = await log.acquire_grant(LEDGER, WRITER)
        done = 0
        while done < events:
            requests = [
                AppendRequest(f"account-{done // FILL_EVENTS + r}", tuple(
                    NewEvent("deposited", b'{"amount":%d,"currency":"EUR"}' % (done + e))
                    for e in range(FILL_EVENTS)))
                for r in range(FILL_REQUESTS)]
            await log.append_batch(grant, requests)
            done += FILL_REQUESTS * FILL_EVENTS
        await log.release_grant(grant)
    finally:
        await log.close()
    return time.perf_counter() - started


async def startup_seconds(app_uri: str, admin_uri: str, work: Path) -> float:
    """The seconds canonlog.open() takes to return a client ready to append."""
    settings = canonlog.Settings(dsn=app_uri, admin_dsn=admin_uri, data_dir=work,
                                 writer_id=WRITER, log_level="error")
    configure_logging(settings)
    started = time.perf_counter()
    async with canonlog.open(settings):
        return time.perf_counter() - started


async def run(cluster: Cluster, sizes: tuple[int, int], runs: int) -> dict[int, list[float]]:
    await build_canonlog_template(cluster, TEMPLATE)
    targets = {}
    for size in sizes:
        name = f"bench_startup_{size}"
        await create_database(cluster, name, TEMPLATE)
        app = cluster.admin.on(name).as_user(APP_ROLE, cluster.app_password).uri()
        seconds = await fill(app, size)
        say(f"filled {size:,} events in {seconds:.1f} s")
        work = Path(tempfile.mkdtemp(prefix=f"canonlog-startup-{size}-"))
        targets[size] = (app, cluster.admin.on(name).uri(), work)
        await startup_seconds(*targets[size])  # the first start warms the caches
    timings: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(runs):
        for size in sizes:
            timings[size].append(await startup_seconds(*targets[size]))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small ledgers, for a smoke run")
    parser.add_argument("--dsn", help="a superuser DSN of the server to measure on")
    parser.add_argument("--runs", type=int, default=7, help="starts per ledger (median)")
    parser.add_argument("--output", help="also write the figures to this Markdown file")
    args = parser.parse_args()
    sizes = SIZES[1] if args.quick else SIZES[0]
    timings = asyncio.run(run(start_cluster(args.dsn), sizes, args.runs))
    small, large = (statistics.median(timings[size]) for size in sizes)
    ratio = large / small
    verdict = "met" if ratio <= GOAL_RATIO else "not met"
    lines = [f"startup on {size:>9,} events: median {statistics.median(timings[size]) * 1e3:7.1f} ms"
             f"  (runs: {', '.join(f'{t * 1e3:.0f}' for t in timings[size])} ms)" for size in sizes]
    lines.append(f"ratio {sizes[1]:,} / {sizes[0]:,}: {ratio:.2f}x (goal <= {GOAL_RATIO}x: {verdict})")
    print("\n".join(lines))
    if args.output:
        Path(args.output).write_text(
            "# Writer startup against ledger length\n\n"
            f"Generated by `python -m bench.startup{' --quick' if args.quick else ''}` on "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}, {args.runs} starts per ledger, "
            f"alternately, in one server (see bench/startup.py for what a start does).\n\n"
            + "".join(f"    {line}\n" for line in lines), "utf-8")

if __name__ == "__main__":
    main()
