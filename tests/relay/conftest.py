"""Fixtures of the relay tests: a ledger with a writer, the relay's store, and a
second database on the test server for the PostgreSQL projection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from canonlog.application.ports import append_one
from canonlog.domain.events import AppendRequest, NewEvent, WriterGrant
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.relay_store import PostgresRelayStore

LEDGER = "main"


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
