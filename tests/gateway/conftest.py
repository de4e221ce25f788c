"""A write gateway on a real PostgreSQL: a started writer, the example policies, and
approvers' keys registered in the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.gateway import WriteGateway
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.domain.gateway import LedgerExecutor, WriteCommand
from canonlog.infrastructure.gateway_policy_file import load_policy_file
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease, MemoryEventLog
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.testing import open_in_memory
from tests.http.conftest import auth_config, jwks_file, tokens  # noqa: F401  (HTTP fixtures)
from tests.support.keys import public_bytes, seeded_key

EXAMPLE_POLICIES = Path(__file__).parents[2] / "examples" / "gateway" / "policies.toml"
CEO_KEY = seeded_key(71)
COO_KEY = seeded_key(72)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class GatewayEnv:
    database: Any
    log: Any
    writer: EventWriterService
    gateway: WriteGateway
    clock: Clock
    #: Other logs to close; the first is the operator's (keys, halts).
    logs: list[Any] = field(default_factory=list)

    async def sign(self, execution_id: str, key: Ed25519PrivateKey = CEO_KEY) -> bytes:
        ticket = await self.gateway.ticket(execution_id)
        return key.sign(self.gateway.statement(ticket))

    async def events(self, stream: str) -> list[Any]:
        return await self.log.read_stream("main", stream)


def command(task: str = "KPI_WEEKLY_SUMMARY", execution_id: str = "kpi-2026-w49",
            target: str = "kpi/weekly/revenue", operation: str = "upsert",
            payload: Any = None, **fields: Any) -> WriteCommand:
    return WriteCommand.create(
        task_id=task, execution_id=execution_id, target=target, operation=operation,
        payload={"week": "2026-W49", "revenue": 1250} if payload is None else payload,
        summary=fields.pop("summary", "weekly revenue"),
        requested_by=fields.pop("requested_by", "kpi-job"), **fields)


def plan_command(execution_id: str = "plan-7-001", task: str = "CEO_GOAL_PLAN_7DAY",
                 target: str = "plans/ceo/7day/2026-W49") -> WriteCommand:
    return command(task=task, execution_id=execution_id, target=target, operation="create",
                   payload={"goals": ["ship the gateway"], "horizon_days": 7},
                   summary="next week's goals", requested_by="planner")


async def register_approvers(log: Any) -> None:
    await log.add_key("main", "ceo-2026", "agent", "ceo", public_bytes(CEO_KEY), "ops")
    await log.add_key("main", "coo-2026", "agent", "coo", public_bytes(COO_KEY), "ops")


async def start_writer(log: AsyncpgEventLog, writer_id: str = "writer-a",
                       registry: dict[str, Any] | None = None) -> EventWriterService:
    writer = EventWriterService(
        log, InMemoryLease("main", writer_id, ttl=30.0, registry={} if registry is None
                           else registry),
        [LedgerHaltChannel(log)], MemoryHeadStore(),
        WriterConfig(ledger_id="main", writer_id=writer_id))
    await writer.start()
    return writer


@pytest.fixture
def gw(postgres_gw: GatewayEnv) -> GatewayEnv:
    """The gateway on PostgreSQL (tests of the rules alone run on memory too)."""
    return postgres_gw


@pytest.fixture
async def memory_gw() -> AsyncIterator[GatewayEnv]:
    """The gateway on the in-memory ledger of canonlog.testing, one log for every role."""
    log = MemoryEventLog()
    clock = Clock()
    async with open_in_memory("main", event_log=log) as client:
        await register_approvers(log)
        gateway = WriteGateway(client.writer, log, "main", {"ledger": LedgerExecutor()},
                               clock=clock)
        await gateway.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
        yield GatewayEnv(None, log, client.writer, gateway, clock, [log])


@pytest.fixture
async def postgres_gw(database: Any) -> AsyncIterator[GatewayEnv]:
    log = await AsyncpgEventLog.connect(database.app.uri(), max_size=6)
    writer = await start_writer(log)
    operator = await AsyncpgEventLog.connect(database.operator.uri(), max_size=2)
    await register_approvers(operator)
    clock = Clock()
    gateway = WriteGateway(writer, log, "main", {"ledger": LedgerExecutor()}, clock=clock)
    await gateway.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
    env = GatewayEnv(database, log, writer, gateway, clock, [operator])
    yield env
    await writer.stop()
    await log.close()
    for other in env.logs:
        await other.close()
