"""Gateway commits side by side with plain appends, in one run.

    python -m bench.gateway [--quick] [--runs N] [--dsn SUPERUSER_DSN]

Plain is canonlog's public API (LedgerClient.append through the writer, as
bench.peers.CanonlogSystem): one call appends one order event. Gateway is the
write gateway of the same ledger (bootstrap.open_gateway, the same writer): one
call is one governed write of the same event under a task whose policy needs no
approval, request_write then commit_write, each with an execution id of its own.
A governed write is two appends (the ticket: requested and staged; the write with
its committed audit event) and the ticket reads around them, so it stores four
events where a plain append stores one; the figures count writes, not events.
Both run 1 and 16 closed-loop callers on a fresh database cloned from a migrated
template, interleaved; figures are medians of --runs runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import canonlog
from bench.measure import Measurement
from bench.peers import CanonlogSystem, Stream, Target, order_payload
from bench.server import (
    Cluster,
    build_canonlog_template,
    drop_database,
    find_postmaster,
    start_cluster,
)
from bench.side_by_side import measure_fresh
from canonlog.application.gateway import WriteGateway
from canonlog.domain.gateway import WriteCommand
from canonlog.infrastructure.bootstrap import configure_logging, open_gateway

TEMPLATE = "bench_gateway_template"
#: (callers, writes in total: full, quick)
SHAPES = ((1, (1_000, 100)), (16, (3_200, 320)))
POLICY = """
[executors]
"order-*" = "ledger"

[tasks.BENCH_ORDERS]
targets = ["order-*"]
operations = ["append"]
approvals = 0
"""
#: Events a governed write stores: requested, staged, the write, committed.
EVENTS_PER_WRITE = 4


class GatewaySystem:
    """Governed writes through the write gateway, no approval needed."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._gateway: WriteGateway | None = None

    async def open(self, target: Target, connections: int) -> None:
        policy = target.work_dir / "policies.toml"
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(POLICY)
        settings = canonlog.Settings(dsn=target.app_uri, admin_dsn=target.admin_uri,
                                     data_dir=target.work_dir, log_level="error",
                                     gateway_policy_file=policy)
        configure_logging(settings)
        self._gateway = await self._stack.enter_async_context(open_gateway(settings))

    async def append(self, stream: Stream, count: int) -> None:
        assert self._gateway is not None
        for version in stream.take(count):
            command = WriteCommand.create(
                task_id="BENCH_ORDERS", execution_id=f"{stream.name}-{version}",
                target=stream.name, operation="append",
                payload=order_payload(stream.name, version), requested_by="bench")
            await self._gateway.request_write(command)
            await self._gateway.commit_write(command.execution_id, "bench")

    async def stored(self) -> int:
        assert self._gateway is not None
        head = await self._gateway.reader.head(self._gateway.ledger_id)
        # Less the writer's grant and the policy version.
        return (head.sequence - 2) // EVENTS_PER_WRITE

    async def close(self) -> None:
        await self._stack.aclose()


async def _measure(cluster: Cluster, system_name: str, callers: int, writes: int,
                   work: Path, number: int) -> Measurement:
    system = GatewaySystem() if system_name == "gateway" else CanonlogSystem()
    return await measure_fresh(cluster, TEMPLATE, f"bench_gateway_{system_name}_{callers}_{number}",
                               system, system_name, callers, writes, work, "writes")


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cluster = await find_postmaster(start_cluster(args.dsn))
    await build_canonlog_template(cluster, TEMPLATE)
    work = Path(tempfile.mkdtemp(prefix="canonlog-bench-gateway-"))
    rows: list[dict[str, Any]] = []
    try:
        for callers, totals in SHAPES:
            writes = totals[1] if args.quick else totals[0]
            found: dict[str, list[Measurement]] = {"plain": [], "gateway": []}
            for number in range(args.runs):
                for name in found:
                    found[name].append(await _measure(cluster, name, callers, writes, work,
                                                      number))
                    print(f"  {name}, {callers} caller(s), run {number + 1}: "
                          f"{found[name][-1].events_per_s:,.0f} writes/s", file=sys.stderr)
            for name, runs in found.items():
                rows.append({"system": name, "callers": callers,
                             "writes_per_s": statistics.median(r.events_per_s for r in runs),
                             "p50_ms": statistics.median(r.p50_ms or 0 for r in runs),
                             "p99_ms": statistics.median(r.p99_ms or 0 for r in runs)})
    finally:
        await drop_database(cluster, TEMPLATE)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| callers | system | writes/s | p50 ms | p99 ms | gateway / plain throughput |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        ratio = ""
        if row["system"] == "gateway":
            base = next(r for r in rows if r["system"] == "plain" and r["callers"] == row["callers"])
            ratio = f"{row['writes_per_s'] / base['writes_per_s']:.2f}"
        lines.append(f"| {row['callers']} | {row['system']} | {row['writes_per_s']:,.0f} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few writes: a smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", help="a superuser DSN; default: an embedded server")
    print(_table(asyncio.run(_run(parser.parse_args()))))


if __name__ == "__main__":
    main()
