"""Fixtures of the relay tests: a ledger with a writer, the relay's store, and a
second database on the test server for the PostgreSQL projection."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp import web

from canonlog.application.ports import append_one
from canonlog.domain.events import AppendRequest, NewEvent, WriterGrant
from canonlog.domain.webhook_signature import verify
from canonlog.infrastructure.destinations.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.relay_store import PostgresRelayStore

LEDGER = "main"
SECRET = b"s" * 32


@dataclass
class Ledger:
    """The app login's event log with the write grant, and a way to append."""

    log: AsyncpgEventLog
    grant: WriterGrant

    async def append(self, count: int = 1, stream: str = "orders") -> int:
        """Appends count events, one request each; returns the new head sequence."""
        last = 0
        for n in range(count):
            result = await append_one(self.log, self.grant, AppendRequest.create(
                stream, [NewEvent.create("order.placed", {"n": n, "id": uuid.uuid4().hex})]))
            last = result.events[-1].sequence
        return last


@pytest.fixture
async def ledger(database) -> AsyncIterator[Ledger]:
    log = await AsyncpgEventLog.connect(database.app.uri(), min_size=1, max_size=4)
    try:
        yield Ledger(log, await log.acquire_grant(LEDGER, "writer-1"))
    finally:
        await log.close()


@pytest.fixture
async def store(database) -> AsyncIterator[PostgresRelayStore]:
    relay_store = await PostgresRelayStore.connect(database.app.uri())
    try:
        yield relay_store
    finally:
        await relay_store.close()


@pytest.fixture
async def projection_dsn(pg_admin) -> AsyncIterator[str]:
    """A database other than the ledger's, on the same server."""
    name = f"canonlog_projection_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield pg_admin.on(name).uri()
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Receiver:
    """A real local HTTP server that checks signatures and keeps events by sequence."""

    def __init__(self, status: int = 200, delay: float = 0.0, garbage: bool = False) -> None:
        self.status, self.delay, self.garbage = status, delay, garbage
        self.held: dict[int, str] = {}
        self.deliveries: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.delay)
        verify(SECRET, request.headers.get(SIGNATURE_HEADER),
               request.headers.get(TIMESTAMP_HEADER), body, now=time.time(),
               window=300)
        self.deliveries.append(request.headers[DELIVERY_HEADER])
        if self.garbage:
            return web.Response(status=502, text="<html>bad gateway</html>")
        for event in json.loads(body)["events"]:
            self.held[event["sequence"]] = event["hash"]
        return web.Response(status=self.status)


@pytest.fixture
async def receiver():
    state = Receiver()
    app = web.Application()
    async def route(request: web.Request) -> web.Response:
        return await state.handle(request)  # looked up per request: a test may replace it

    app.router.add_post("/hook", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hook"  # type: ignore[attr-defined]
    yield state
    await runner.cleanup()
