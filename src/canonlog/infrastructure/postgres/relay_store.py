"""The relay's durable state in PostgreSQL: consumers, cursors, failures, the lease.

Cursors move by compare-and-set on the sequence they were read at, so a relay
that lost its lease (or an operator's replay running beside it) can never move a
cursor backwards or past an event it did not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any

import asyncpg

from canonlog.domain.errors import CanonlogError, ConsumerNotFound, InvalidConsumer
from canonlog.domain.relay import ConsumerSettings, ConsumerState, DeliveryFailure
from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.queries import load_queries

QUERIES = load_queries(__package__, "relay_queries.sql")

#: First key of the consumer leases' advisory locks: a class of its own, apart from
#: the append path's (1668050791) and the writer lease's (1668050792).
CONSUMER_LOCK_CLASS = 1668050793


def _state(row: Any) -> ConsumerState:
    return ConsumerState(
        name=row["consumer"], ledger_id=row["ledger_id"], cursor_seq=row["cursor_seq"],
        cursor_hash=bytes(row["cursor_hash"]) if row["cursor_hash"] is not None else None,
        poison_policy=row["poison_policy"], max_attempts=row["max_attempts"],
        paused=row["paused"], stopped=row["stopped"], synced_at=row["synced_at"],
    )


def _failure(row: Any) -> DeliveryFailure:
    return DeliveryFailure(
        consumer=row["consumer"], sequence=row["seq"], hash=bytes(row["hash"]),
        status=row["status"], attempts=row["attempts"], last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
    )


class PostgresRelayStore:
    """RelayStore on an asyncpg pool (the application's login, canonlog_relay)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 4) -> PostgresRelayStore:
        async with translated():
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool, for the idempotency store that shares it."""
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def register(self, settings: ConsumerSettings) -> ConsumerState:
        async with translated():
            row = await self._pool.fetchrow(
                QUERIES["register_consumer"], settings.name, settings.ledger_id,
                settings.poison_policy, settings.max_attempts)
        if row is None:
            existing = await self.consumer(settings.name)
            raise InvalidConsumer(f"consumer {settings.name!r} follows ledger {existing.ledger_id!r}, "
                             f"not {settings.ledger_id!r}")
        return _state(row)

    async def consumer(self, name: str) -> ConsumerState:
        async with translated():
            row = await self._pool.fetchrow(QUERIES["consumer"], name)
        if row is None:
            raise ConsumerNotFound(f"no relay consumer named {name!r}")
        return _state(row)

    async def consumers(self) -> list[ConsumerState]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["consumers"])
        return [_state(row) for row in rows]

    async def advance(self, name: str, expected_seq: int, sequence: int, digest: bytes) -> bool:
        async with translated(), self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(QUERIES["advance_cursor"], name, expected_seq,
                                        sequence, digest)
            if status != "UPDATE 1":
                return False
            await conn.execute(QUERIES["clear_failures_through"], name, sequence)
            return True

    async def record_failure(self, name: str, sequence: int, digest: bytes, error: str,
                             retry_in: float) -> DeliveryFailure:
        await self.consumer(name)
        async with translated():
            row = await self._pool.fetchrow(QUERIES["record_failure"], name, sequence, digest,
                                            error, retry_in)
        return _failure(row)

    async def dead_letter(self, name: str, expected_seq: int, sequence: int, digest: bytes
                          ) -> bool:
        try:
            async with translated(), self._pool.acquire() as conn, conn.transaction():
                if await conn.execute(QUERIES["mark_dead_letter"], name, sequence) != "UPDATE 1":
                    return False
                status = await conn.execute(QUERIES["advance_cursor"], name, expected_seq,
                                            sequence, digest)
                if status != "UPDATE 1":
                    raise _Rollback
                return True
        except _Rollback:
            return False

    async def failures(self, name: str, *, dead_letters_only: bool = False,
                       limit: int = 1000) -> list[DeliveryFailure]:
        await self.consumer(name)
        async with translated():
            rows = await self._pool.fetch(QUERIES["failures"], name, dead_letters_only, limit)
        return [_failure(row) for row in rows]

    async def resolve(self, name: str, sequence: int) -> bool:
        async with translated():
            status = await self._pool.execute(QUERIES["resolve_failure"], name, sequence)
        return bool(status == "DELETE 1")

    async def set_paused(self, name: str, paused: bool) -> ConsumerState:
        async with translated():
            row = await self._pool.fetchrow(QUERIES["set_paused"], name, paused)
        if row is None:
            raise ConsumerNotFound(f"no relay consumer named {name!r}")
        return _state(row)

    async def stop(self, name: str, reason: str) -> None:
        async with translated():
            status = await self._pool.execute(QUERIES["stop_consumer"], name, reason)
        if status != "UPDATE 1":
            raise ConsumerNotFound(f"no relay consumer named {name!r}")


class _Rollback(Exception):
    """Raised inside a transaction to undo it; caught right outside."""


class AdvisoryConsumerLease:
    """ConsumerLease as a session advisory lock on a connection of its own.

    PostgreSQL frees the lock when the session ends, so a relay that dies frees
    its consumer at once; another process waiting in acquire() then takes it.
    """

    def __init__(self, dsn: str, *, poll_interval: float = 0.5) -> None:
        self._dsn = dsn
        self._poll = poll_interval
        self._conn: asyncpg.Connection | None = None
        self._key: int | None = None

    async def acquire(self, consumer: str, *, wait: bool = True) -> bool:
        key = zlib.crc32(consumer.encode("utf-8")) - 2**31
        async with translated():
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn)
            while True:
                if await self._conn.fetchval("SELECT pg_try_advisory_lock($1, $2)",
                                             CONSUMER_LOCK_CLASS, key):
                    self._key = key
                    return True
                if not wait:
                    return False
                await asyncio.sleep(self._poll)

    async def held(self) -> bool:
        if self._conn is None or self._conn.is_closed() or self._key is None:
            return False
        try:
            async with translated():
                return bool(await self._conn.fetchval(
                    "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::int = $1 AND objid::int = $2)",
                    CONSUMER_LOCK_CLASS, self._key))
        except CanonlogError:
            return False

    async def release(self) -> None:
        self._key = None
        if self._conn is not None:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._conn.close()
            self._conn = None
