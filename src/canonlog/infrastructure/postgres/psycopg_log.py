"""The EventLog on PostgreSQL through psycopg 3: the second adapter, same contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format, TransactionStatus
from psycopg.rows import DictRow, dict_row

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import CanonlogError, InvalidEvent, LedgerNotFound, StorageError
from canonlog.domain.events import (
    GENESIS_HASH,
    AppendRequest,
    Head,
    LedgerState,
    RecordedEvent,
    RegisteredKey,
    WriterGrant,
)
from canonlog.domain.governance import GovernancePolicy, PolicyInForce
from canonlog.infrastructure.postgres.codec import (
    QUERIES,
    append_args,
    append_outcomes,
    ceremonies_from_rows,
    event_from_row,
    key_from_row,
    policies_from_rows,
    policy_text,
    replayed_ranges,
    translate_error,
)

Connection = psycopg.AsyncConnection[DictRow]


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The one place psycopg errors become canonlog errors."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if exc.sqlstate is None:
            raise StorageError(f"PostgreSQL connection failed: {exc}") from exc
        raise translate_error(
            exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail
        ) from exc
    except psycopg.Error as exc:
        if exc.sqlstate is None:
            # Raised by the client itself, before or without a server reply.
            raise StorageError(f"psycopg refused the call: {exc}") from exc
        raise translate_error(
            exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise StorageError(f"PostgreSQL connection failed: {type(exc).__name__}: {exc}") from exc


# psycopg infers a list's type from its elements: a list of only None would go
# as an untyped literal, a list of small ints as smallint[]. Each _PgArray subclass
# is dumped as the declared array type of the append_v1 parameter it fills.
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


#: The array parameters of canonlog.append_v1, in order, after ledger, writer, epoch and
#: known sequence.
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


def _append_params(grant: WriterGrant, requests: Sequence[AppendRequest]) -> tuple[Any, ...]:
    args = append_args(grant, requests)
    scalars, arrays = args[:4], args[4:]
    typed = (array(values) for array, values in zip(_APPEND_ARRAYS, arrays, strict=True))
    return (*scalars, *typed)


# Up to max_size connections, opened on demand and reused. Autocommit makes every
# statement its own transaction at the default READ COMMITTED level, which the
# append function requires. A connection goes back to the pool only when it is
# open and idle; one the server dropped, or one psycopg could not bring back to
# idle after a cancelled query, is closed instead and the next caller opens a
# fresh one.
class _ConnectionPool:

    def __init__(self, dsn: str, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._dsn = dsn
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[Connection] = []
        self._closed = False

    async def open(self) -> None:
        # One connection up front, so an unreachable server is reported by connect().
        async with self._slots:
            self._idle.append(await self._connect())

    async def _connect(self) -> Connection:
        return await psycopg.AsyncConnection.connect(
            self._dsn,
            autocommit=True,
            row_factory=dict_row,
            cursor_factory=psycopg.AsyncRawCursor,
            context=_ADAPTERS,
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise StorageError("the event log is closed")
        async with self._slots:
            if self._closed:
                raise StorageError("the event log is closed")
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            finally:
                if (self._closed or conn.closed
                        or conn.info.transaction_status != TransactionStatus.IDLE):
                    await conn.close()
                else:
                    self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class PsycopgEventLog:
    """EventLog over psycopg 3 connections; see the EventLog port for the contract."""

    def __init__(self, pool: _ConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 10) -> PsycopgEventLog:
        pool = _ConnectionPool(dsn, max_size)
        async with translated():
            await pool.open()
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def _fetch(self, query: str, *args: Any) -> list[DictRow]:
        async with translated(), self._pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(QUERIES[query], args)
            return await cursor.fetchall()

    async def _fetchrow(self, query: str, *args: Any) -> DictRow | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        (row,) = await self._fetch("acquire_grant", ledger_id, writer_id)
        return WriterGrant(ledger_id, writer_id, row["epoch"])

    async def release_grant(self, grant: WriterGrant) -> None:
        await self._fetch("release_grant", grant.ledger_id, grant.writer_id, grant.epoch)

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        if not requests:
            return []
        try:
            (row,) = await self._fetch("append", *_append_params(grant, requests))
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            # psycopg raises these unwrapped when it cannot convert an argument to
            # its parameter type (a lone surrogate, a naive datetime, an int beyond
            # bigint); the call is refused before anything reaches the database.
            raise InvalidEvent(f"the request cannot be sent to the database: {exc}") from exc
        replayed: list[DictRow] = []
        for first, last in replayed_ranges(requests, row):
            replayed += await self._fetch("read_range", grant.ledger_id, first, last)
        return append_outcomes(grant, requests, row, replayed)

    async def append(self, grant: WriterGrant, request: AppendRequest) -> AppendResult:
        (outcome,) = await self.append_batch(grant, [request])
        if isinstance(outcome, CanonlogError):
            raise outcome
        return outcome

    async def read_stream(
        self, ledger_id: str, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._fetch("read_stream", ledger_id, stream_id, from_version, limit)
        return [event_from_row(r) for r in rows]

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        rows = await self._fetch("read_all", ledger_id, after, limit)
        return [event_from_row(r) for r in rows]

    async def head(self, ledger_id: str) -> Head:
        row = await self._fetchrow("head", ledger_id)
        if row is None:
            return Head(ledger_id, 0, GENESIS_HASH)
        return Head(ledger_id, row["seq"], bytes(row["hash"]))

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        row = await self._fetchrow("ledger_state", ledger_id)
        if row is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist")
        return LedgerState(
            row["ledger_id"], row["writer_id"], row["epoch"], row["halted"], row["halt_reason"]
        )

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        (row,) = await self._fetch("halt", ledger_id, reason, actor)
        changed: bool = row["changed"]
        return changed

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        (row,) = await self._fetch("add_key", ledger_id, key_id, purpose, owner_id, public_key,
                                   actor)
        seq: int = row["seq"]
        return seq

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        (row,) = await self._fetch("revoke_key", ledger_id, key_id, actor, reason)
        seq: int = row["seq"]
        return seq

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        return [key_from_row(r) for r in await self._fetch("list_keys", ledger_id)]

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        (row,) = await self._fetch("propose_failover", ledger_id, target_writer_id, actor)
        proposal_id: int = row["proposal_id"]
        return proposal_id

    async def propose_resume(self, ledger_id: str, actor: str) -> int:
        (row,) = await self._fetch("propose_resume", ledger_id, actor)
        proposal_id: int = row["proposal_id"]
        return proposal_id

    async def approve(
        self, ledger_id: str, proposal_id: int, key_id: str, signature: bytes, actor: str
    ) -> int:
        (row,) = await self._fetch("approve", ledger_id, proposal_id, key_id, signature, actor)
        seq: int = row["seq"]
        return seq

    async def execute_failover(self, ledger_id: str, proposal_id: int, actor: str
                               ) -> WriterGrant:
        (row,) = await self._fetch("execute_failover", ledger_id, proposal_id, actor)
        (ceremony,) = await self.ceremonies(ledger_id, proposal_id)
        assert ceremony.target_writer_id is not None
        return WriterGrant(ledger_id, ceremony.target_writer_id, row["epoch"])

    async def resume_ceremony(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        (row,) = await self._fetch("resume_ceremony", ledger_id, proposal_id, actor)
        return int(row["seq"])

    async def establish_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str
                               ) -> int:
        (row,) = await self._fetch("establish_policy", ledger_id, policy_text(policy), actor)
        return int(row["seq"])

    async def propose_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str) -> int:
        (row,) = await self._fetch("propose_policy", ledger_id, policy_text(policy), actor)
        return int(row["proposal_id"])

    async def execute_policy_change(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        (row,) = await self._fetch("execute_policy_change", ledger_id, proposal_id, actor)
        return int(row["seq"])

    async def policies(self, ledger_id: str) -> list[PolicyInForce]:
        return policies_from_rows(await self._fetch("policies", ledger_id))

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        return ceremonies_from_rows(await self._fetch("ceremonies", ledger_id, proposal_id))
