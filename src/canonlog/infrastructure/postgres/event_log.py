"""The EventLog on PostgreSQL: each method is one named query, mapped to the domain once.

A Driver runs the queries; the asyncpg driver (asyncpg_log.py) is the writer's
hot path, the psycopg driver (psycopg_log.py) the second one, held to the same
contract tests. A driver raises only canonlog errors: it translates its own at
one choke point.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import CanonlogError, LedgerNotFound
from canonlog.domain.events import (
    AppendRequest,
    Head,
    LedgerState,
    RecordedEvent,
    RegisteredKey,
    WriterGrant,
)
from canonlog.domain.governance import GovernancePolicy, PolicyInForce
from canonlog.infrastructure.postgres.append_args import AppendHints, append_args
from canonlog.infrastructure.postgres.rows import (
    Row,
    append_outcomes,
    ceremonies_from_rows,
    event_from_row,
    head_from_row,
    key_from_row,
    ledger_state_from_row,
    policies_from_rows,
)


class Driver(Protocol):
    """Runs the named queries of queries.sql with $n arguments on one database."""

    async def fetch(self, query: str, *args: Any) -> Sequence[Row]:
        """Returns every row of the named query."""
        ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        """Returns the first row of the named query, or None."""
        ...

    async def fetchval(self, query: str, *args: Any) -> Any:
        """Returns the first column of the first row of the named query."""
        ...

    async def append(self, args: tuple[Any, ...]) -> Row:
        """Calls the append function with the arguments append_args built; returns its row."""
        ...

    async def close(self) -> None:
        """Closes every connection; later calls raise StorageError."""
        ...


class PostgresEventLog:
    """EventLog over a Driver; see the EventLog port for the contract."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._hints = AppendHints()

    async def close(self) -> None:
        await self._driver.close()

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        epoch = await self._driver.fetchval("acquire_grant", ledger_id, writer_id)
        return WriterGrant(ledger_id, writer_id, epoch)

    async def release_grant(self, grant: WriterGrant) -> None:
        await self._driver.fetch("release_grant", grant.ledger_id, grant.writer_id, grant.epoch)

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        if not requests:
            return []
        row = await self._driver.append(append_args(grant, requests, self._hints))
        outcomes = append_outcomes(grant, requests, row)
        self._hints.learn(grant.ledger_id, requests, row)
        return outcomes

    async def append(self, grant: WriterGrant, request: AppendRequest) -> AppendResult:
        """append_batch of one request: returns its result or raises its error."""
        (outcome,) = await self.append_batch(grant, [request])
        if isinstance(outcome, CanonlogError):
            raise outcome
        return outcome

    async def read_stream(
        self, ledger_id: str, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._driver.fetch("read_stream", ledger_id, stream_id, from_version, limit)
        return [event_from_row(r) for r in rows]

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        rows = await self._driver.fetch("read_all", ledger_id, after, limit)
        return [event_from_row(r) for r in rows]

    async def read_execution(self, ledger_id: str, execution_id: str) -> list[RecordedEvent]:
        rows = await self._driver.fetch("read_execution", ledger_id, execution_id)
        return [event_from_row(r) for r in rows]

    async def head(self, ledger_id: str) -> Head:
        return head_from_row(ledger_id, await self._driver.fetchrow("head", ledger_id))

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        row = await self._driver.fetchrow("ledger_state", ledger_id)
        if row is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist")
        return ledger_state_from_row(row)

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        changed: bool = await self._driver.fetchval("halt", ledger_id, reason, actor)
        return changed

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        seq: int = await self._driver.fetchval(
            "add_key", ledger_id, key_id, purpose, owner_id, public_key, actor
        )
        return seq

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        seq: int = await self._driver.fetchval("revoke_key", ledger_id, key_id, actor, reason)
        return seq

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        return [key_from_row(r) for r in await self._driver.fetch("list_keys", ledger_id)]

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        proposal_id: int = await self._driver.fetchval(
            "propose_failover", ledger_id, target_writer_id, actor
        )
        return proposal_id

    async def propose_resume(self, ledger_id: str, actor: str) -> int:
        proposal_id: int = await self._driver.fetchval("propose_resume", ledger_id, actor)
        return proposal_id

    async def approve(
        self, ledger_id: str, proposal_id: int, key_id: str, signature: bytes, actor: str
    ) -> int:
        seq: int = await self._driver.fetchval(
            "approve", ledger_id, proposal_id, key_id, signature, actor
        )
        return seq

    async def execute_failover(self, ledger_id: str, proposal_id: int, actor: str
                               ) -> WriterGrant:
        epoch: int = await self._driver.fetchval("execute_failover", ledger_id, proposal_id, actor)
        (ceremony,) = await self.ceremonies(ledger_id, proposal_id)
        assert ceremony.target_writer_id is not None
        return WriterGrant(ledger_id, ceremony.target_writer_id, epoch)

    async def resume_ceremony(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        seq: int = await self._driver.fetchval("resume_ceremony", ledger_id, proposal_id, actor)
        return seq

    async def establish_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str
                               ) -> int:
        seq: int = await self._driver.fetchval(
            "establish_policy", ledger_id, _policy_text(policy), actor
        )
        return seq

    async def propose_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str) -> int:
        proposal_id: int = await self._driver.fetchval(
            "propose_policy", ledger_id, _policy_text(policy), actor
        )
        return proposal_id

    async def execute_policy_change(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        seq: int = await self._driver.fetchval(
            "execute_policy_change", ledger_id, proposal_id, actor
        )
        return seq

    async def policies(self, ledger_id: str) -> list[PolicyInForce]:
        return policies_from_rows(await self._driver.fetch("policies", ledger_id))

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        return ceremonies_from_rows(await self._driver.fetch("ceremonies", ledger_id, proposal_id))


def _policy_text(policy: GovernancePolicy) -> str:
    """A policy as the text the establish_policy and propose_policy queries take."""
    return json.dumps(policy.document(), sort_keys=True)
