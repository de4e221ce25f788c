"""HTTP appends side by side with in-process appends.

    python -m bench.http_appends [--quick] [--runs N] [--dsn SUPERUSER_DSN]

In-process is canonlog's public API (LedgerClient.append through the writer, as
bench.peers.CanonlogSystem). HTTP is the service in a process of its own
(uvicorn, authentication off on loopback), driven from this process by an
aiohttp client with one keep-alive connection per caller; each call is one POST
of one event. (httpx's pool spent about 5 ms of client CPU per request at 64
callers, which measured the client rather than the service.) Both run
1 and 64 closed-loop callers on a fresh database cloned from a migrated
template; figures are medians of --runs interleaved runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import Measurement
from bench.peers import EVENT_TYPE, CanonlogSystem, Stream, Target, order_payload
from bench.server import (
    Cluster,
    build_canonlog_template,
    drop_database,
    find_postmaster,
    start_cluster,
)
from bench.side_by_side import measure_fresh

TEMPLATE = "bench_http_template"
#: (callers, events in total: full, quick)
SHAPES = ((1, (2_000, 100)), (64, (12_800, 640)))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpSystem:
    """The service in a child process, appended to over HTTP."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def open(self, target: Target, connections: int) -> None:
        port = _free_port()
        spec = {"dsn": target.app_uri, "admin_dsn": target.admin_uri,
                "data_dir": str(target.work_dir), "port": port}
        self._process = subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
            [sys.executable, "-m", "bench.http_appends", "--serve", json.dumps(spec)])
        self._session = aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}", connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=60))
        deadline = time.monotonic() + 60
        while True:
            try:
                async with self._session.get("/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the service did not become ready")
            await asyncio.sleep(0.1)

    async def append(self, stream: Stream, count: int) -> None:
        assert self._session is not None
        name = stream.name
        events = [{"type": EVENT_TYPE, "payload": order_payload(name, v)} for v in stream.take(count)]
        async with self._session.post(f"/v1/streams/{name}/events",
                                      json={"events": events}) as response:
            if response.status != 201:
                raise SystemExit(f"append refused: {response.status} {await response.text()}")

    async def stored(self) -> int:
        assert self._session is not None
        async with self._session.get("/v1/head") as response:
            return int((await response.json())["sequence"]) - 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self._process.wait, 30)


def _serve(spec_json: str) -> None:
    from canonlog.infrastructure.bootstrap import configure_logging
    from canonlog.infrastructure.http import ServiceConfig
    from canonlog.infrastructure.http.auth import AuthConfig
    from canonlog.infrastructure.http.server import serve
    from canonlog.infrastructure.settings import Settings

    spec = json.loads(spec_json)
    settings = Settings(dsn=spec["dsn"], admin_dsn=spec["admin_dsn"], data_dir=Path(spec["data_dir"]),
                        log_level="error")
    configure_logging(settings)
    config = ServiceConfig(port=spec["port"], auth=AuthConfig(required=False))
    asyncio.run(serve(settings, config, announce=lambda line: None))


async def _measure(cluster: Cluster, system_name: str, callers: int, events: int,
                   work: Path, number: int) -> Measurement:
    system = HttpSystem() if system_name == "http" else CanonlogSystem()
    return await measure_fresh(cluster, TEMPLATE, f"bench_http_{system_name}_{callers}_{number}",
                               system, system_name, callers, events, work, "events")


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cluster = await find_postmaster(start_cluster(args.dsn))
    await build_canonlog_template(cluster, TEMPLATE)
    work = Path(tempfile.mkdtemp(prefix="canonlog-bench-http-"))
    rows: list[dict[str, Any]] = []
    try:
        for callers, totals in SHAPES:
            events = totals[1] if args.quick else totals[0]
            found: dict[str, list[Measurement]] = {"in-process": [], "http": []}
            for number in range(args.runs):
                for name in found:
                    found[name].append(await _measure(cluster, name, callers, events, work, number))
                    print(f"  {name}, {callers} caller(s), run {number + 1}: "
                          f"{found[name][-1].events_per_s:,.0f} events/s", file=sys.stderr)
            for name, runs in found.items():
                rows.append({"system": name, "callers": callers,
                             "events_per_s": statistics.median(r.events_per_s for r in runs),
                             "p50_ms": statistics.median(r.p50_ms or 0 for r in runs),
                             "p99_ms": statistics.median(r.p99_ms or 0 for r in runs)})
    finally:
        await drop_database(cluster, TEMPLATE)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| callers | system | events/s | p50 ms | p99 ms | HTTP / in-process throughput |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        ratio = ""
        if row["system"] == "http":
            base = next(r for r in rows if r["system"] == "in-process" and r["callers"] == row["callers"])
            ratio = f"{row['events_per_s'] / base['events_per_s']:.2f}"
        lines.append(f"| {row['callers']} | {row['system']} | {row['events_per_s']:,.0f} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few events: a smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", help="a superuser DSN; default: an embedded server")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    print(_table(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
