"""The asyncpg driver of the PostgreSQL event log: the writer's hot path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from canonlog.domain.errors import StorageError
from canonlog.infrastructure.postgres.errors import connection_failed, translate_error
from canonlog.infrastructure.postgres.event_log import PostgresEventLog
from canonlog.infrastructure.postgres.queries import QUERIES
from canonlog.infrastructure.postgres.rows import Row


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The one place asyncpg errors become canonlog errors."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise translate_error(exc.sqlstate, getattr(exc, "message", None) or str(exc),
                              getattr(exc, "detail", None)) from exc
    except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError) as exc:
        # No answer from the server: the connection closed, broke mid-call or timed out.
        raise connection_failed(exc) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skips asyncpg's reset on release (RESET ALL, UNLISTEN *, ...): a round trip per
    query, and needless here, since nothing this adapter runs leaves session state
    behind (the functions' settings are transaction-local)."""


class AsyncpgDriver:
    """Driver over an asyncpg pool, with one connection kept for appends."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # One connection kept out of the pool for appends: taking a connection from
        # an asyncpg pool and giving it back costs tens of microseconds per call
        # (a shielded task, timers), a good part of a single append. An append that
        # finds it busy uses the pool.
        self._appender: asyncpg.pool.PoolConnectionProxy | None = None
        self._appender_busy = False

    async def fetch(self, query: str, *args: Any) -> Sequence[Row]:
        async with translated():
            return await self.pool.fetch(QUERIES[query], *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        async with translated():
            return await self.pool.fetchrow(QUERIES[query], *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with translated():
            return await self.pool.fetchval(QUERIES[query], *args)

    async def append(self, args: tuple[Any, ...]) -> Row:
        async with translated():
            row = await self._append_row(args)
        if row is None:
            raise StorageError("the append function returned no row")
        return row

    async def _append_row(self, args: tuple[Any, ...]) -> Row | None:
        pool = self.pool
        if self._appender_busy:
            return await pool.fetchrow(QUERIES["append"], *args)
        self._appender_busy = True
        try:
            if self._appender is None:
                self._appender = await pool.acquire()
            row = await self._appender.fetchrow(QUERIES["append"], *args)
        except asyncpg.PostgresError:
            raise  # the server refused the call; the connection is as good as before
        except BaseException:
            # The pool knows how to recover a connection from an error or a
            # cancellation; a fresh one is taken for the next append.
            await asyncio.shield(self._release_appender())
            raise
        finally:
            self._appender_busy = False
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            # Every other connection is in use and no more may be opened: keeping this
            # one could leave a caller of the pool waiting for good.
            await self._release_appender()
        return row

    async def _release_appender(self) -> None:
        appender, self._appender = self._appender, None
        if appender is not None:
            await self.pool.release(appender)

    async def close(self) -> None:
        async with translated():
            await self._release_appender()
            await self.pool.close()


class AsyncpgEventLog(PostgresEventLog):
    """The PostgreSQL EventLog through asyncpg; see the EventLog port for the contract."""

    def __init__(self, driver: AsyncpgDriver, dsn: str | None = None) -> None:
        super().__init__(driver)
        self.driver = driver
        #: Where the pool connects, for tools that need connections of their own.
        self.dsn = dsn

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncpgEventLog:
        async with translated():
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             reset=_keep_session)
        return cls(AsyncpgDriver(pool), dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for the server checks and tools that share it."""
        return self.driver.pool
