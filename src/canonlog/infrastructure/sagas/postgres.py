"""Saga backends in a PostgreSQL database of the user's: rows, a graph, vectors; and the
per-saga advisory lock.

Each operation is one statement keyed by the step's idempotency key (a ``saga_key``
column with ON CONFLICT DO NOTHING), so running it again after a crash does nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

from canonlog.application.ports import StepOutcome
from canonlog.domain.errors import BackendRejected, BackendUnavailable, StorageError
from canonlog.domain.saga import SagaStep
from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.queries import load_queries

QUERIES: Final = load_queries(__package__, "queries.sql")
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: SQLSTATE classes that say the request itself is wrong: data (22), integrity
#: constraints (23), syntax or access (42). Anything else may pass if retried.
_REFUSALS: Final = ("22", "23", "42")


async def connect_pool(dsn: str, *, max_size: int = 4) -> asyncpg.Pool:
    """An asyncpg pool on the user's database; raises BackendUnavailable."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise BackendUnavailable(f"cannot reach the backend database: {exc}") from exc
    return pool


@asynccontextmanager
async def _backend_errors(what: str) -> AsyncIterator[None]:
    try:
        yield
    except asyncpg.PostgresError as exc:
        state = getattr(exc, "sqlstate", "") or ""
        if state[:2] in _REFUSALS:
            raise BackendRejected(f"{what}: {exc} (SQLSTATE {state})") from exc
        raise BackendUnavailable(f"{what}: {exc} (SQLSTATE {state})") from exc
    except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError) as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc


def _identifier(value: object, what: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise BackendRejected(f"{what} {value!r} is not a plain SQL identifier")
    return f'"{value}"'


def _table(value: object) -> str:
    parts = value.split(".") if isinstance(value, str) else [value]
    if len(parts) > 2:
        raise BackendRejected(f"table {value!r} is not table or schema.table")
    return ".".join(_identifier(p, "table") for p in parts)


def _field(payload: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind):
        raise BackendRejected(f"{what} payload needs {name!r} as {kind.__name__}")
    return value


class RelationalBackend:
    """Rows in the user's tables. ``insert`` takes {"table", "values"}; the table needs a
    unique ``saga_key`` text column, which holds the step's idempotency key."""

    kind = "relational"
    operations = frozenset({"insert"})

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def apply(self, step: SagaStep) -> StepOutcome:
        payload = step.payload_object()
        table = _table(payload.get("table"))
        values = _field(payload, "values", dict, "insert")
        columns = ", ".join(_identifier(c, "column") for c in (*values, "saga_key"))
        # jsonb_populate_record converts each value to its column's type, so the
        # statement needs no per-column casts.
        sql = (f"INSERT INTO {table} ({columns}) SELECT {columns} FROM "
               f"jsonb_populate_record(NULL::{table}, $1::jsonb) "
               "ON CONFLICT (saga_key) DO NOTHING RETURNING saga_key")
        record = json.dumps({**values, "saga_key": step.idempotency_key})
        async with _backend_errors(f"insert into {payload['table']}"):
            inserted = await self._pool.fetchval(sql, record)
        return StepOutcome(applied=inserted is not None, result={"table": payload["table"]})

    async def remove(self, step: SagaStep) -> None:
        table = _table(step.payload_object().get("table"))
        async with _backend_errors("delete"):
            await self._pool.execute(f"DELETE FROM {table} WHERE saga_key = $1",
                                     step.idempotency_key)


class GraphBackend:
    """Nodes and edges in two tables of the user's database (created by ensure_schema).
    ``add_node`` takes {"node_id", "label", "properties"}; ``add_edge`` {"source",
    "label", "target", "properties"}."""

    kind = "graph"
    operations = frozenset({"add_node", "add_edge"})

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ensure_schema(self) -> None:
        async with _backend_errors("create the graph tables"):
            await self._pool.execute(QUERIES["graph_schema"])

    async def apply(self, step: SagaStep) -> StepOutcome:
        p = step.payload_object()
        properties = json.dumps(p.get("properties") or {})
        if step.operation == "add_node":
            node = _field(p, "node_id", str, "add_node")
            args: tuple[Any, ...] = (node, _field(p, "label", str, "add_node"), properties)
            query, result = "graph_add_node", {"node_id": node}
        else:
            args = (_field(p, "source", str, "add_edge"), _field(p, "label", str, "add_edge"),
                    _field(p, "target", str, "add_edge"), properties)
            query, result = "graph_add_edge", {"source": args[0], "target": args[2]}
        async with _backend_errors(step.operation):
            inserted = await self._pool.fetchval(QUERIES[query], *args, step.idempotency_key)
        return StepOutcome(applied=inserted is not None, result=result)

    async def remove(self, step: SagaStep) -> None:
        async with _backend_errors("delete from the graph"):
            await self._pool.execute(QUERIES["graph_delete"], step.idempotency_key)


class VectorBackend:
    """Chunks of a document with their embeddings, in pgvector (created by ensure_schema,
    which needs the extension available on the server). ``upsert_chunks`` takes
    {"document_id", "chunks": [{"content", "embedding": [numbers]}]}."""

    kind = "vector"
    operations = frozenset({"upsert_chunks"})

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def available(self) -> bool:
        """True when the server offers the pgvector extension."""
        async with _backend_errors("look for pgvector"):
            return bool(await self._pool.fetchval(QUERIES["vector_available"]))

    async def ensure_schema(self) -> None:
        """Creates the extension (when the login may) and the chunks table; raises
        BackendRejected when the server does not have pgvector."""
        if not await self.available():
            raise BackendRejected("this PostgreSQL server does not have the pgvector extension")
        async with _backend_errors("create the vector table"):
            await self._pool.execute(QUERIES["vector_schema"])

    async def apply(self, step: SagaStep) -> StepOutcome:
        p = step.payload_object()
        document = _field(p, "document_id", str, "upsert_chunks")
        chunks = _field(p, "chunks", list, "upsert_chunks")
        contents, embeddings = [], []
        for chunk in chunks:
            if not isinstance(chunk, dict) or not isinstance(chunk.get("content"), str) \
                    or not isinstance(chunk.get("embedding"), list) or not chunk["embedding"]:
                raise BackendRejected("each chunk needs 'content' and a non-empty 'embedding'")
            contents.append(chunk["content"])
            embeddings.append(json.dumps(chunk["embedding"]))
        async with _backend_errors("upsert_chunks"):
            rows = await self._pool.fetch(QUERIES["vector_insert"], step.idempotency_key,
                                          document, contents, embeddings)
        return StepOutcome(applied=bool(rows), result={"document_id": document,
                                                       "chunks": len(chunks)})

    async def remove(self, step: SagaStep) -> None:
        async with _backend_errors("delete chunks"):
            await self._pool.execute(QUERIES["vector_delete"], step.idempotency_key)


class PostgresSagaLocks:
    """SagaLocks as session advisory locks on pooled connections of canonlog's database.

    A holder that dies drops its connection and with it the lock, so another worker
    can take the saga over at once.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def hold(self, saga_id: str) -> AsyncIterator[bool]:
        async with translated():
            conn = await self._pool.acquire()
        try:
            async with translated():
                held = bool(await conn.fetchval(QUERIES["try_lock"], saga_id))
            try:
                yield held
            finally:
                if held:
                    await self._unlock(conn, saga_id)
        finally:
            await self._pool.release(conn)

    async def _unlock(self, conn: Any, saga_id: str) -> None:
        try:
            async with translated():
                await conn.fetchval(QUERIES["unlock"], saga_id)
        except StorageError:
            # The connection is broken, which releases the lock with the session.
            conn.terminate()
