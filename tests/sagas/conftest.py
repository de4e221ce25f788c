"""Sagas against real servers: canonlog's ledger on the session's PostgreSQL, the
backends in a second database of the user's on the same server, the session's
Valkey, and a directory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from canonlog.application.client import LedgerClient
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.ports import SagaBackend, SagaLocks
from canonlog.application.saga_registry import CompensationRegistry
from canonlog.application.sagas import SagaOrchestrator
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.sagas.files import FileBackend
from canonlog.infrastructure.sagas.kv import KeyValueBackend
from canonlog.infrastructure.sagas.postgres import (
    GraphBackend,
    PostgresSagaLocks,
    RelationalBackend,
    VectorBackend,
)
from tests.support.servers import PgTarget

#: The user's tables the examples write to; each has the saga_key column the relational
#: backend keys its inserts by.
USER_TABLES = """
CREATE TABLE documents (id serial PRIMARY KEY, slug text NOT NULL UNIQUE, title text NOT NULL,
                        saga_key text NOT NULL UNIQUE);
CREATE TABLE stock_reservations (id serial PRIMARY KEY, sku text NOT NULL, quantity integer
                                 NOT NULL CHECK (quantity > 0), saga_key text NOT NULL UNIQUE);
"""


@pytest.fixture
async def user_db(pg_admin: PgTarget) -> AsyncIterator[PgTarget]:
    """A second database on the test server, as a user's own, with its tables."""
    name = f"saga_user_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    target = pg_admin.on(name)
    conn = await asyncpg.connect(target.uri())
    try:
        await conn.execute(USER_TABLES)
    finally:
        await conn.close()
    yield target
    conn = await asyncpg.connect(pg_admin.uri())
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class SagaWorld:
    """A running ledger with the saga orchestrator and its backends."""

    client: LedgerClient
    event_log: AsyncpgEventLog
    backends: dict[str, SagaBackend]
    user_pool: asyncpg.Pool
    redis: redis.Redis
    files: Path
    prefix: str
    vector: bool

    def orchestrator(self, *, backends: Mapping[str, SagaBackend] | None = None,
                     locks: SagaLocks | None = None, max_attempts: int = 3,
                     retry_base_delay: float = 0.001, **kwargs: Any) -> SagaOrchestrator:
        return SagaOrchestrator(self.client, backends or self.backends,
                                CompensationRegistry.with_defaults(),
                                locks or PostgresSagaLocks(self.event_log.pool),
                                max_attempts=max_attempts, retry_base_delay=retry_base_delay,
                                **kwargs)

    async def ledger_events(self) -> int:
        return (await self.client.head()).sequence


@asynccontextmanager
async def saga_world(app: PgTarget, user: PgTarget, redis_url: str, files: Path,
                     *, writer_id: str = "writer-a") -> AsyncIterator[SagaWorld]:
    event_log = await AsyncpgEventLog.connect(app.uri(), max_size=6)
    writer = EventWriterService(
        event_log, InMemoryLease("main", writer_id, ttl=30.0, registry={}),
        [LedgerHaltChannel(event_log)], MemoryHeadStore(),
        WriterConfig(ledger_id="main", writer_id=writer_id),
    )
    await writer.start()
    pool = await asyncpg.create_pool(user.uri(), min_size=1, max_size=4)
    client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    graph, vector = GraphBackend(pool), VectorBackend(pool)
    await graph.ensure_schema()
    backends: dict[str, SagaBackend] = {
        "relational": RelationalBackend(pool), "graph": graph,
        "kv": KeyValueBackend(client), "file": FileBackend(files)}
    has_vector = await vector.available()
    if has_vector:
        await vector.ensure_schema()
        backends["vector"] = vector
    try:
        yield SagaWorld(LedgerClient(writer, event_log, "main"), event_log, backends, pool,
                        client, files, uuid.uuid4().hex[:8], has_vector)
    finally:
        await writer.stop()
        await client.aclose()
        await pool.close()
        await event_log.close()


@pytest.fixture
async def world(database: Any, user_db: PgTarget, redis_url: str,
                tmp_path: Path) -> AsyncIterator[SagaWorld]:
    async with saga_world(database.app, user_db, redis_url, tmp_path / "files") as built:
        yield built


def publish_steps(world: SagaWorld, slug: str = "intro") -> list[dict[str, Any]]:
    """Publishing a document: its file, its metadata row, its vector chunks (where the
    server has pgvector) and its node and link in the graph."""
    steps: list[dict[str, Any]] = [
        {"step_id": "file", "backend": "file", "operation": "write",
         "payload": {"path": f"docs/{slug}.md", "content": "# Intro\n"},
         "compensation": "file_delete"},
        {"step_id": "row", "backend": "relational", "operation": "insert",
         "payload": {"table": "documents", "values": {"slug": slug, "title": "Intro"}},
         "compensation": "relational_delete"},
    ]
    if world.vector:
        steps.append({"step_id": "vector", "backend": "vector", "operation": "upsert_chunks",
                      "payload": {"document_id": slug, "chunks": [
                          {"content": "Intro", "embedding": [0.1, 0.2, 0.3]}]},
                      "compensation": "vector_delete_chunks"})
    steps.append({"step_id": "node", "backend": "graph", "operation": "add_node",
                  "payload": {"node_id": f"doc:{slug}", "label": "document"},
                  "compensation": "graph_delete_node"})
    return steps


def order_steps(world: SagaWorld, order: str = "o-1", quantity: int = 2) -> list[dict[str, Any]]:
    """An order: a stock reservation row, a cache entry and a receipt file."""
    return [
        {"step_id": "reserve", "backend": "relational", "operation": "insert",
         "payload": {"table": "stock_reservations", "values": {"sku": "sku-1",
                                                               "quantity": quantity}},
         "compensation": "relational_delete"},
        {"step_id": "cache", "backend": "kv", "operation": "set",
         "payload": {"key": f"{world.prefix}:order:{order}", "value": {"status": "placed"}},
         "compensation": "kv_delete"},
        {"step_id": "receipt", "backend": "file", "operation": "write",
         "payload": {"path": f"receipts/{order}.txt", "content": f"order {order}\n"},
         "compensation": "file_delete"},
    ]


StepFactory = Callable[[SagaWorld], list[dict[str, Any]]]
