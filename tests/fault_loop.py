"""A long loop of faults under concurrent appends, outside CI.

    python -m tests.fault_loop --iterations 300

Starts a private embedded PostgreSQL, opens canonlog on it with the
advisory-lock lease, keeps concurrent callers appending (each retrying its
request with the same execution id until acknowledged) and injects, in turn:
PostgreSQL stopped with ``-m immediate``, PostgreSQL SIGKILLed (postmaster and
backends), and the writer's event loop blocked past the lease ttl. After each
fault it measures how long the same writer took to acknowledge appends again;
at the end it audits the ledger and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import tempfile
import time
from pathlib import Path

import structlog

import canonlog
from tests.faults.harness import AppendLoad, audit
from tests.support.killable import KillableServer
from tests.support.servers import APP_ROLE, build_template

TTL = 2.0
FAULTS = ("pg_immediate", "pg_sigkill", "loop_blocked")


async def run(iterations: int, workers: int, serve_within: float) -> int:
    server = KillableServer(Path(tempfile.mkdtemp(prefix="canonlog-fault-loop-")) / "pgdata")
    admin = await build_template(server.admin)
    app = admin.as_user(APP_ROLE)
    settings = canonlog.Settings(
        dsn=app.uri(), admin_dsn=admin.uri(), data_dir=server.data_dir.parent / "writer",
        lease_ttl=TTL, lease_renew_interval=TTL / 4, append_timeout=5.0, log_level="critical",
    )
    injected = dict.fromkeys(FAULTS, 0)
    longest = dict.fromkeys(FAULTS, 0.0)
    stalls = 0
    started = time.monotonic()
    try:
        async with canonlog.open(settings) as log:
            load = AppendLoad(log, workers=workers)
            load.start()
            await load.wait_for_acks(20)
            for i, fault in zip(range(iterations), itertools.cycle(FAULTS), strict=False):
                await load.wait_for_acks(10, after=time.monotonic())
                if fault == "loop_blocked":
                    time.sleep(TTL * 1.5)  # noqa: ASYNC251 - the fault itself
                else:
                    crash = server.stop_immediate if fault == "pg_immediate" else server.kill
                    await asyncio.to_thread(crash)
                    await asyncio.sleep(0.1)
                    await asyncio.to_thread(server.start)
                injected[fault] += 1
                back = time.monotonic()
                try:
                    served = await load.wait_for_acks(5, after=back, within=serve_within)
                except AssertionError as exc:
                    stalls += 1
                    print(f"iteration {i} ({fault}): not served again: {exc}", flush=True)
                    continue
                longest[fault] = max(longest[fault], served - back)
                if (i + 1) % 25 == 0:
                    print(f"{i + 1} faults, {len(load.acked)} acknowledged, "
                          f"longest {max(longest.values()):.2f}s", flush=True)
            await load.stop()
            health = log.writer.health()
        result = await audit(admin.uri(), app.uri(), load.acked)
    finally:
        server.stop()
    print(f"\nfaults injected:        {sum(injected.values())} "
          + ", ".join(f"{k} {v}" for k, v in injected.items()))
    print(f"acknowledged appends:   {len(load.acked)} ({result.events} events in the ledger)")
    print(f"lost:                   {result.lost}")
    print(f"duplicated:             {result.duplicated}")
    print(f"gaps:                   {result.gaps}")
    print(f"moved:                  {result.moved}")
    print(f"chain verifies:         {result.chain_ok}")
    print("longest time to serve again: "
          + ", ".join(f"{k} {v:.2f}s" for k, v in longest.items()))
    print(f"never served again within {serve_within}s: {stalls}")
    print(f"errors seen by callers: {dict(sorted(load.errors.items()))}")
    print(f"writer task restarts:   {health.task_restarts}; problems: "
          f"{[p.error for p in health.problems]}")
    print(f"wall time:              {time.monotonic() - started:.0f}s")
    return 0 if result.clean and not stalls else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--serve-within", type=float, default=30.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    # asyncpg logs each failed attempt to refill its pool while the server is down.
    logging.getLogger("asyncpg").setLevel(logging.CRITICAL)
    raise SystemExit(asyncio.run(run(args.iterations, args.workers, args.serve_within)))


if __name__ == "__main__":
    main()
