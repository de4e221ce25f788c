"""The psycopg 3 driver of the PostgreSQL event log: the second driver, same contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format
from psycopg.rows import DictRow, dict_row
from psycopg.types.composite import CompositeInfo, register_composite
from psycopg_pool import AsyncConnectionPool, PoolClosed

from canonlog.domain.errors import CanonlogError, InvalidEvent, StorageError
from canonlog.infrastructure.postgres.errors import connection_failed, translate_error
from canonlog.infrastructure.postgres.event_log import PostgresEventLog
from canonlog.infrastructure.postgres.queries import QUERIES
from canonlog.infrastructure.postgres.rows import Row

Connection = psycopg.AsyncConnection[DictRow]


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The one place psycopg errors become canonlog errors."""
    try:
        yield
    except PoolClosed as exc:
        raise StorageError("the event log is closed") from exc
    except psycopg.Error as exc:
        if exc.sqlstate is None:
            if isinstance(exc, psycopg.OperationalError):
                raise connection_failed(exc) from exc
            # Raised by the client itself, before or without a server reply.
            raise StorageError(f"psycopg refused the call: {exc}") from exc
        raise translate_error(
            exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise connection_failed(exc) from exc


# psycopg infers a list's type from its elements: a list of only None would go
# as an untyped literal, a list of small ints as smallint[]. Each _PgArray subclass
# is dumped as the declared array type of the append function parameter it fills.
class _PgArray(list[Any]):
    element: ClassVar[str]


class _TextArray(_PgArray):
    element = "text"


class _BigintArray(_PgArray):
    element = "int8"


class _IntegerArray(_PgArray):
    element = "int4"


class _TimestamptzArray(_PgArray):
    element = "timestamptz"


class _UuidArray(_PgArray):
    element = "uuid"


class _ByteaArray(_PgArray):
    element = "bytea"


#: The array parameters of the append function, in order, after ledger, writer, epoch
#: and known sequence.
_APPEND_ARRAYS: tuple[type[_PgArray], ...] = (
    _TextArray, _BigintArray, _BigintArray, _IntegerArray,       # stream, expected, known, count
    _TextArray, _TextArray, _TextArray, _TextArray, _TextArray,  # task ... agent
    _TimestamptzArray,                                           # writer time
    _UuidArray, _TextArray, _ByteaArray, _ByteaArray,            # id, type, payload, metadata
    _TextArray, _ByteaArray,                                     # signing key id, signature
)


def _adapters() -> AdaptersMap:
    adapters = AdaptersMap(psycopg.adapters)
    for array in (_TextArray, _BigintArray, _IntegerArray, _TimestamptzArray, _UuidArray,
                  _ByteaArray):
        info = adapters.types[array.element]
        # Binary: payloads travel as raw bytes rather than escaped hex text.
        adapters.register_dumper(array, adapters.get_dumper_by_oid(info.array_oid, Format.BINARY))
    return adapters


_ADAPTERS = _adapters()


async def _adapters_of(conn: Connection) -> AdaptersMap:
    """The adapters, with rows of canonlog.events loaded as dicts: the append function
    returns the original events of replayed requests as an array of them. The
    type's oid is the database's own, hence one map per pool."""
    adapters = AdaptersMap(_ADAPTERS)
    info = await CompositeInfo.fetch(conn, "canonlog.events")
    if info is not None:
        names = info.field_names
        register_composite(info, adapters,
                           make_object=lambda values, _info: dict(zip(names, values, strict=True)))
    return adapters


def _typed(args: tuple[Any, ...]) -> tuple[Any, ...]:
    scalars, arrays = args[:4], args[4:]
    typed = (array(values) for array, values in zip(_APPEND_ARRAYS, arrays, strict=True))
    return (*scalars, *typed)


class PsycopgDriver:
    """Driver over a psycopg_pool of autocommit connections with dict rows.

    Autocommit makes every statement its own transaction at the default READ
    COMMITTED level, which the append function requires. The raw cursor takes the
    $n placeholders of queries.sql as they are.
    """

    def __init__(self, pool: AsyncConnectionPool[Connection]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, max_size: int) -> PsycopgDriver:
        """Opens a pool of up to max_size connections, one at first, more on demand."""
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        kwargs: dict[str, Any] = {
            "autocommit": True, "row_factory": dict_row,
            "cursor_factory": psycopg.AsyncRawCursor, "context": _ADAPTERS,
        }
        async with translated():
            # One connection first, so an unreachable server is reported now rather
            # than retried by the pool in the background.
            async with await psycopg.AsyncConnection.connect(dsn, **kwargs) as probe:
                kwargs["context"] = await _adapters_of(probe)
            pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
                dsn, connection_class=Connection, kwargs=kwargs, min_size=1,
                max_size=max_size, open=False, name="canonlog",
            )
            await pool.open()
        return cls(pool)

    async def fetch(self, query: str, *args: Any) -> list[DictRow]:
        async with translated(), self._pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(QUERIES[query], args)
            return await cursor.fetchall()

    async def fetchrow(self, query: str, *args: Any) -> DictRow | None:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return None if row is None else next(iter(row.values()))

    async def append(self, args: tuple[Any, ...]) -> Row:
        try:
            (row,) = await self.fetch("append", *_typed(args))
        except CanonlogError:
            raise  # the database's refusal, translated (InvalidEvent is a ValueError)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            # psycopg raises these unwrapped when it cannot convert an argument to
            # its parameter type (a lone surrogate, a naive datetime, an int beyond
            # bigint); the call is refused before anything reaches the database.
            raise InvalidEvent(f"the request cannot be sent to the database: {exc}") from exc
        return row

    async def close(self) -> None:
        async with translated():
            await self._pool.close()


class PsycopgEventLog(PostgresEventLog):
    """The PostgreSQL EventLog through psycopg 3; see the EventLog port for the contract."""

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 10) -> PsycopgEventLog:
        return cls(await PsycopgDriver.open(dsn, max_size=max_size))
