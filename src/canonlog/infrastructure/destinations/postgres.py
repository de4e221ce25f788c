"""A projection in another PostgreSQL database as a relay destination.

Each event becomes a row of ``canonlog_projection`` keyed by (ledger, sequence)
and upserted, so a redelivery changes nothing. The table is created on first use
when missing; the login needs CREATE on the schema for that, or a table made
beforehand with the same columns. A delivery is one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from canonlog.domain.errors import DestinationError
from canonlog.domain.events import RecordedEvent
from canonlog.domain.relay import RangeDigest
from canonlog.infrastructure.postgres.queries import load_queries

QUERIES = load_queries(__package__, "postgres.sql")
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
             OSError, TimeoutError)


@asynccontextmanager
async def _translated(what: str) -> AsyncIterator[None]:
    try:
        yield
    except _FAILURES as exc:
        raise DestinationError(f"PostgreSQL projection: {what} failed: "
                               f"{type(exc).__name__}: {exc}") from exc


class PostgresProjection:
    """ReconcilableDestination on an asyncpg pool to the projection's database."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._ready = False

    @classmethod
    async def connect(cls, dsn: str, *, timeout: float = 10.0) -> PostgresProjection:
        async with _translated("connecting"):
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, timeout=timeout,
                                             command_timeout=timeout)
        return cls(pool, timeout)

    async def _ensure_table(self) -> None:
        if not self._ready:
            async with _translated("creating the table"):
                await self._pool.execute(QUERIES["create_table"])
            self._ready = True

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        if not events:
            return
        await self._ensure_table()
        async with _translated("an upsert"):
            await self._pool.execute(
                QUERIES["upsert"], events[0].ledger_id,
                [e.sequence for e in events], [e.hash for e in events],
                [e.event_id for e in events], [e.stream_id for e in events],
                [e.stream_version for e in events], [e.event_type for e in events],
                [e.payload for e in events], [e.metadata for e in events],
                [e.recorded_at for e in events])

    async def digest(self, ledger_id: str, first: int, last: int) -> RangeDigest:
        await self._ensure_table()
        async with _translated("a digest"):
            row = await self._pool.fetchrow(QUERIES["digest"], ledger_id, first, last)
        assert row is not None
        return RangeDigest(first, last, int(row["n"]), bytes(row["digest"]))

    async def entries(self, ledger_id: str, first: int, last: int) -> dict[int, bytes]:
        await self._ensure_table()
        async with _translated("reading rows"):
            rows = await self._pool.fetch(QUERIES["entries"], ledger_id, first, last)
        return {int(row["seq"]): bytes(row["hash"]) for row in rows}

    async def close(self) -> None:
        await self._pool.close()
