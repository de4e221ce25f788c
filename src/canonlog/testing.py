"""An in-memory canonlog for domain services' unit tests.

It runs the same EventWriterService over the in-memory EventLog, so it assigns
the same sequences, computes the same hashes and raises the same errors as the
PostgreSQL implementation:

    async with canonlog.testing.open_in_memory() as log:
        await log.append("order-1", [canonlog.event("order_placed", {"amount": 120})])

open_in_memory_gateway gives the write gateway over such a ledger, with the same
rules, events and errors as over PostgreSQL.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from canonlog.application.client import LedgerClient
from canonlog.application.gateway import WriteGateway, utc_now
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.ports import Clock, WriteExecutor
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.domain.events import DEFAULT_LEDGER
from canonlog.domain.gateway import GatewayPolicies, LedgerExecutor
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease, MemoryEventLog

#: One lease registry per in-memory log, so two writers on one log contend as two
#: processes on one database would, while separate logs never do.
_LEASES: weakref.WeakKeyDictionary[MemoryEventLog, dict[str, tuple[str, float]]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def open_in_memory(
    ledger_id: str = DEFAULT_LEDGER, writer_id: str = "test-writer",
    *, event_log: MemoryEventLog | None = None,
) -> AsyncIterator[LedgerClient]:
    """Yields a LedgerClient on a fresh (or the given) in-memory ledger."""
    event_log = event_log or MemoryEventLog()
    registry = _LEASES.setdefault(event_log, {})
    lease = InMemoryLease(ledger_id, writer_id, ttl=3600.0, registry=registry)
    writer = EventWriterService(
        event_log, lease, [LedgerHaltChannel(event_log)], MemoryHeadStore(),
        WriterConfig(ledger_id=ledger_id, writer_id=writer_id, lease_renew_interval=60.0),
    )
    await writer.start()
    try:
        yield LedgerClient(writer, event_log, ledger_id)
    finally:
        await writer.stop()


@asynccontextmanager
async def open_in_memory_gateway(
    policies: GatewayPolicies, ledger_id: str = DEFAULT_LEDGER, *,
    event_log: MemoryEventLog | None = None, clock: Clock = utc_now,
    executors: dict[str, WriteExecutor] | None = None,
) -> AsyncIterator[WriteGateway]:
    """Yields a write gateway on a fresh (or the given) in-memory ledger with policies
    loaded (executors: the ledger executor as "ledger" unless given). Register
    approvers' keys with event_log.add_key."""
    event_log = event_log or MemoryEventLog()
    async with open_in_memory(ledger_id, event_log=event_log) as client:
        gateway = WriteGateway(client.writer, event_log, ledger_id,
                               executors or {"ledger": LedgerExecutor()}, clock=clock)
        await gateway.load_policies(policies, "test")
        yield gateway


__all__ = ["open_in_memory", "open_in_memory_gateway"]
