"""The writer lease on PostgreSQL itself: a session advisory lock, for the embedded default."""

from __future__ import annotations

import asyncio
import math
import time

import asyncpg

from canonlog.domain.errors import StorageError
from canonlog.infrastructure.postgres.queries import QUERIES

#: First key of the lease's advisory lock. The append path takes transaction
#: locks under 1668050791; a different class keeps the two from ever colliding.
LEASE_LOCK_CLASS = 1668050792

#: The fraction of the ttl a holder gives up in advance (see valid_until).
SAFETY_MARGIN = 0.1

#: Everything asyncpg raises when a call on the lease's connection fails: the
#: server's errors, a closed or broken connection, a connection left mid-query
#: by a timeout (InternalClientError), and the timeout itself.
_CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError,
                      asyncpg.InternalClientError, OSError, TimeoutError)


class AdvisoryLockLease:
    """WriterLease held as a session-level advisory lock on a dedicated connection.

    The connection is open while the lease is held (or being taken) and closed
    on release, on a refused acquire and once the lease is lost.

    The lock lives as long as the session: PostgreSQL frees it when the holder
    releases it, its connection closes, or its backend is terminated. The
    session runs with ``idle_session_timeout`` set to the ttl, so a holder that
    stops renewing (crashed, paused, cut off) loses the lock about one ttl after
    its last renew, as with a Redis key's expiry. Renew confirms in ``pg_locks``
    that this backend still holds the lock. The DSN must reach PostgreSQL
    directly (no transaction-pooling proxy), since the lock belongs to a session.
    PostgreSQL 14 or newer.
    """

    def __init__(self, dsn: str, ledger_id: str, writer_id: str, *, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        self._dsn = dsn
        self._ledger_id = ledger_id
        self._writer_id = writer_id
        self._ttl = ttl
        self._conn: asyncpg.Connection | None = None
        self._held = False
        self._valid_until = 0.0
        # One asyncpg connection runs one query at a time; a release racing a
        # renew would otherwise fail with "another operation is in progress".
        self._lock = asyncio.Lock()

    async def acquire(self) -> bool:
        async with self._lock:
            if self._held and await self._confirm():
                return True
            try:
                async with asyncio.timeout(max(self._ttl, 5.0)):
                    conn = await self._connection()
                    sent = time.monotonic()
                    acquired: bool = await conn.fetchval(
                        QUERIES["lease_try_lock"], LEASE_LOCK_CLASS, self._ledger_id
                    )
            except _CONNECTION_ERRORS as exc:
                self._discard()
                raise StorageError(
                    f"could not acquire the writer lease of ledger {self._ledger_id} "
                    f"in PostgreSQL: {exc or type(exc).__name__}"
                ) from exc
            if not acquired:
                # No idle session waits for its turn (idle_session_timeout would end it anyway).
                self._discard()
                return False
            self._held = True
            self._valid_until = sent + self._ttl * (1 - SAFETY_MARGIN)
            return True

    async def renew(self) -> bool:
        async with self._lock:
            if not self._held:
                return False
            return await self._confirm()

    async def release(self) -> None:
        async with self._lock:
            self._valid_until = 0.0
            self._held = False
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                async with asyncio.timeout(self._ttl / 2):
                    await conn.fetchval(QUERIES["lease_unlock"], LEASE_LOCK_CLASS, self._ledger_id)
                    await conn.close()
            except _CONNECTION_ERRORS:
                # Closing the session frees the lock as well.
                conn.terminate()

    def valid_until(self) -> float:
        return self._valid_until

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            timeout_ms = math.ceil(self._ttl * 1000)
            self._conn = await asyncpg.connect(
                self._dsn,
                server_settings={
                    "application_name": f"canonlog lease {self._writer_id}"[:63],
                    "idle_session_timeout": str(timeout_ms),
                },
            )
        return self._conn

    async def _confirm(self) -> bool:
        """Checks the lock is still this session's; extends valid_until or gives the lease up."""
        conn = self._conn
        if conn is None:
            return self._lost()
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._ttl / 2):
                held: bool = await conn.fetchval(
                    QUERIES["lease_held"], LEASE_LOCK_CLASS, self._ledger_id
                )
        except _CONNECTION_ERRORS:
            held = False
        if not held:
            return self._lost()
        self._valid_until = sent + self._ttl * (1 - SAFETY_MARGIN)
        return True

    def _lost(self) -> bool:
        # A check that failed may have left the session alive and holding the
        # lock; ending the session makes "lost" true for everyone, so another
        # instance can take over instead of waiting for an unknown holder.
        self._discard()
        self._held = False
        self._valid_until = 0.0
        return False

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
