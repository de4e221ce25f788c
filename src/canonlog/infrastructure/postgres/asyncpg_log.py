"""The EventLog on PostgreSQL through asyncpg: the writer's hot path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import CanonlogError, LedgerNotFound, StorageError
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
    AppendHints,
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
        raise StorageError(f"PostgreSQL connection failed: {type(exc).__name__}: {exc}") from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skips asyncpg's reset on release (RESET ALL, UNLISTEN *, ...): a round trip per
    query, and needless here, since nothing this adapter runs leaves session state
    behind (the functions' settings are transaction-local)."""


class AsyncpgEventLog:
    """EventLog over an asyncpg pool; see the EventLog port for the contract."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._hints = AppendHints()
        # One connection kept out of the pool for appends: taking a connection from
        # an asyncpg pool and giving it back costs tens of microseconds per call
        # (a shielded task, timers), a good part of a single append. An append that
        # finds it busy uses the pool.
        self._appender: asyncpg.pool.PoolConnectionProxy | None = None
        self._appender_busy = False

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncpgEventLog:
        async with translated():
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             reset=_keep_session)
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def close(self) -> None:
        async with translated():
            await self._release_appender()
            await self._pool.close()

    async def _release_appender(self) -> None:
        appender, self._appender = self._appender, None
        if appender is not None:
            await self._pool.release(appender)

    async def _append_row(self, args: tuple[Any, ...]) -> Any:
        if self._appender_busy:
            return await self._pool.fetchrow(QUERIES["append"], *args)
        self._appender_busy = True
        try:
            if self._appender is None:
                self._appender = await self._pool.acquire()
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
        pool = self._pool
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            # Every other connection is in use and no more may be opened: keeping this
            # one could leave a caller of the pool waiting for good.
            await self._release_appender()
        return row

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        async with translated():
            epoch = await self._pool.fetchval(QUERIES["acquire_grant"], ledger_id, writer_id)
        return WriterGrant(ledger_id, writer_id, epoch)

    async def release_grant(self, grant: WriterGrant) -> None:
        async with translated():
            await self._pool.execute(
                QUERIES["release_grant"], grant.ledger_id, grant.writer_id, grant.epoch
            )

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        if not requests:
            return []
        async with translated():
            row = await self._append_row(append_args(grant, requests, self._hints))
            if row is None:
                raise StorageError("canonlog.append_v1 returned no row")
            replayed = []
            for first, last in replayed_ranges(requests, row):
                replayed += await self._pool.fetch(
                    QUERIES["read_range"], grant.ledger_id, first, last
                )
        outcomes = append_outcomes(grant, requests, row, replayed)
        self._hints.learn(grant.ledger_id, requests, row)
        return outcomes

    async def append(self, grant: WriterGrant, request: AppendRequest) -> AppendResult:
        (outcome,) = await self.append_batch(grant, [request])
        if isinstance(outcome, CanonlogError):
            raise outcome
        return outcome

    async def read_stream(
        self, ledger_id: str, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        async with translated():
            rows = await self._pool.fetch(
                QUERIES["read_stream"], ledger_id, stream_id, from_version, limit
            )
        return [event_from_row(r) for r in rows]

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["read_all"], ledger_id, after, limit)
        return [event_from_row(r) for r in rows]

    async def head(self, ledger_id: str) -> Head:
        async with translated():
            row = await self._pool.fetchrow(QUERIES["head"], ledger_id)
        if row is None:
            return Head(ledger_id, 0, GENESIS_HASH)
        return Head(ledger_id, row["seq"], bytes(row["hash"]))

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        async with translated():
            row = await self._pool.fetchrow(QUERIES["ledger_state"], ledger_id)
        if row is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist")
        return LedgerState(
            row["ledger_id"], row["writer_id"], row["epoch"], row["halted"], row["halt_reason"]
        )

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        async with translated():
            changed: bool = await self._pool.fetchval(QUERIES["halt"], ledger_id, reason, actor)
        return changed

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["add_key"], ledger_id, key_id, purpose, owner_id, public_key, actor
            )
        return seq

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["revoke_key"], ledger_id, key_id, actor, reason
            )
        return seq

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["list_keys"], ledger_id)
        return [key_from_row(r) for r in rows]

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        async with translated():
            proposal_id: int = await self._pool.fetchval(
                QUERIES["propose_failover"], ledger_id, target_writer_id, actor
            )
        return proposal_id

    async def propose_resume(self, ledger_id: str, actor: str) -> int:
        async with translated():
            proposal_id: int = await self._pool.fetchval(QUERIES["propose_resume"], ledger_id, actor)
        return proposal_id

    async def approve(
        self, ledger_id: str, proposal_id: int, key_id: str, signature: bytes, actor: str
    ) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["approve"], ledger_id, proposal_id, key_id, signature, actor
            )
        return seq

    async def execute_failover(self, ledger_id: str, proposal_id: int, actor: str
                               ) -> WriterGrant:
        async with translated():
            epoch: int = await self._pool.fetchval(
                QUERIES["execute_failover"], ledger_id, proposal_id, actor
            )
        (ceremony,) = await self.ceremonies(ledger_id, proposal_id)
        assert ceremony.target_writer_id is not None
        return WriterGrant(ledger_id, ceremony.target_writer_id, epoch)

    async def resume_ceremony(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["resume_ceremony"], ledger_id, proposal_id, actor)
        return seq

    async def establish_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str
                               ) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["establish_policy"], ledger_id, policy_text(policy), actor)
        return seq

    async def propose_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str) -> int:
        async with translated():
            proposal_id: int = await self._pool.fetchval(
                QUERIES["propose_policy"], ledger_id, policy_text(policy), actor)
        return proposal_id

    async def execute_policy_change(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        async with translated():
            seq: int = await self._pool.fetchval(
                QUERIES["execute_policy_change"], ledger_id, proposal_id, actor)
        return seq

    async def policies(self, ledger_id: str) -> list[PolicyInForce]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["policies"], ledger_id)
        return policies_from_rows(rows)

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["ceremonies"], ledger_id, proposal_id)
        return ceremonies_from_rows(rows)
