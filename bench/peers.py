"""The systems measured side by side, each saving the same ~200-byte order event.

Every caller owns one stream and builds its events from a Python dict at call
time, so encoding the payload is part of what each system is timed for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

import canonlog
from bench.server import PgAddress
from canonlog.domain.events import AppendRequest, NewEvent, WriteContext, WriterGrant
from canonlog.infrastructure.bootstrap import configure_logging
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder
    from eventsourcing.postgres import PostgresFactory

EVENT_TYPE = "order_placed"
ES_TOPIC = "bench.peers:OrderPlaced"
LEDGER = "main"
EMPTY_METADATA = b"{}"


def order_payload(stream: str, version: int) -> dict[str, Any]:
    """The benchmark's event: an order with two lines, about 200 bytes as JSON."""
    return {
        "order_id": f"{stream}-{version:08d}",
        "customer_id": "cust-4217",
        "amount_cents": 12_000 + version % 1000,
        "currency": "EUR",
        "items": [{"sku": "SKU-10427", "qty": 2}, {"sku": "SKU-20931", "qty": 1}],
        "shipping": {"country": "DE", "express": False},
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(slots=True)
class Stream:
    """One caller's stream; versions count up as the caller appends."""

    name: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 0

    def take(self, count: int) -> range:
        start = self.version + 1
        self.version += count
        return range(start, start + count)


@dataclass(frozen=True, slots=True)
class Target:
    """A fresh database for one measurement, and where its server runs."""

    admin_uri: str
    app_uri: str
    work_dir: Path
    postmaster_pid: int | None


class AsyncSystem(Protocol):
    """A system with an asyncio API: its callers are tasks on one event loop."""

    async def open(self, target: Target, connections: int) -> None: ...
    async def append(self, stream: Stream, count: int) -> None: ...
    async def stored(self) -> int: ...
    async def close(self) -> None: ...


class ThreadedSystem(Protocol):
    """A system with a synchronous API: its callers are threads."""

    def open(self, target: Target, connections: int) -> None: ...
    def append(self, stream: Stream, count: int) -> None: ...
    def stored(self) -> int: ...
    def close(self) -> None: ...


@cache
def _raw_queries() -> dict[str, str]:
    text = (Path(__file__).parent / "raw.sql").read_text("utf-8")
    queries: dict[str, str] = {}
    for chunk in text.split("-- name: ")[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip()
    return queries


def raw_query(name: str) -> str:
    return _raw_queries()[name]


class RawSystem:
    """Plain asyncpg INSERTs into a table with no integrity: one per event, or one per batch."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._one = raw_query("insert_one")
        self._many = raw_query("insert_many")

    async def open(self, target: Target, connections: int) -> None:
        self._pool = await asyncpg.create_pool(target.admin_uri, min_size=connections,
                                               max_size=connections)

    async def append(self, stream: Stream, count: int) -> None:
        assert self._pool is not None
        name = stream.name
        if count == 1:
            (version,) = stream.take(1)
            await self._pool.execute(self._one, name, version, EVENT_TYPE,
                                     encode(order_payload(name, version)), EMPTY_METADATA)
            return
        versions = stream.take(count)
        await self._pool.execute(
            self._many, [name] * count, list(versions), [EVENT_TYPE] * count,
            [encode(order_payload(name, v)) for v in versions], [EMPTY_METADATA] * count,
        )

    async def stored(self) -> int:
        assert self._pool is not None
        count: int = await self._pool.fetchval(raw_query("count"))
        return count

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class CanonlogSystem:
    """canonlog's public API: canonlog.open(...) and LedgerClient.append, through the writer."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._client: canonlog.LedgerClient | None = None

    async def open(self, target: Target, connections: int) -> None:
        # The runtime role's pool keeps its default size: the flusher uses one
        # connection at a time whatever the number of callers.
        settings = canonlog.Settings(dsn=target.app_uri, admin_dsn=target.admin_uri,
                                     data_dir=target.work_dir, log_level="error")
        configure_logging(settings)
        self._client = await self._stack.enter_async_context(canonlog.open(settings))

    @property
    def client(self) -> canonlog.LedgerClient:
        assert self._client is not None
        return self._client

    async def append(self, stream: Stream, count: int) -> None:
        assert self._client is not None
        name = stream.name
        events = [canonlog.event(EVENT_TYPE, order_payload(name, v)) for v in stream.take(count)]
        await self._client.append(name, events)

    async def stored(self) -> int:
        # Less the ledger's own event recording the writer's grant.
        return (await self.client.head()).sequence - 1

    async def close(self) -> None:
        await self._stack.aclose()


class CanonlogDirectSystem:
    """canonlog's append function called directly (AsyncpgEventLog.append under a grant):
    no writer service, no halt check, no lease, no group commit."""

    def __init__(self) -> None:
        self._log: AsyncpgEventLog | None = None
        self._grant: WriterGrant | None = None

    async def open(self, target: Target, connections: int) -> None:
        self._log = await AsyncpgEventLog.connect(target.app_uri, min_size=connections,
                                                  max_size=connections)
        self._grant = await self._log.acquire_grant(LEDGER, "bench-direct")

    async def append(self, stream: Stream, count: int) -> None:
        assert self._log is not None and self._grant is not None
        name = stream.name
        request = AppendRequest.create(
            name, [NewEvent.create(EVENT_TYPE, order_payload(name, v)) for v in stream.take(count)],
            context=WriteContext(writer_time=datetime.now(UTC)),
        )
        await self._log.append(self._grant, request)

    async def stored(self) -> int:
        assert self._log is not None
        return (await self._log.head(LEDGER)).sequence - 1

    async def close(self) -> None:
        if self._log is not None:
            await self._log.close()


class EventsourcingSystem:
    """The eventsourcing library's PostgresApplicationRecorder, given StoredEvents directly
    (its aggregate, mapper and transcoder layers are not measured). Sync API: threads."""

    def __init__(self) -> None:
        self._factory: PostgresFactory | None = None
        self._recorder: ApplicationRecorder | None = None
        self._stored_event: Callable[..., Any] | None = None

    def open(self, target: Target, connections: int) -> None:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.postgres import PostgresFactory
        from eventsourcing.utils import Environment

        address = PgAddress.from_dsn(target.admin_uri)
        env = Environment("bench", {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": address.database,
            "POSTGRES_HOST": address.host,
            "POSTGRES_PORT": str(address.port),
            "POSTGRES_USER": address.user,
            "POSTGRES_PASSWORD": address.password or "",
            "POSTGRES_POOL_SIZE": str(connections),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_CONNECT_TIMEOUT": "60",
        })
        self._factory = PostgresFactory(env)
        self._recorder = self._factory.application_recorder()
        self._stored_event = StoredEvent

    def append(self, stream: Stream, count: int) -> None:
        assert self._recorder is not None and self._stored_event is not None
        make = self._stored_event
        self._recorder.insert_events([
            make(originator_id=stream.id, originator_version=v, topic=ES_TOPIC,
                 state=encode(order_payload(stream.name, v)))
            for v in stream.take(count)
        ])

    def stored(self) -> int:
        assert self._recorder is not None
        return self._recorder.max_notification_id() or 0

    def close(self) -> None:
        if self._factory is not None:
            self._factory.close()


ASYNC_SYSTEMS: dict[str, Callable[[], AsyncSystem]] = {
    "raw": RawSystem,
    "canonlog": CanonlogSystem,
    "canonlog-direct": CanonlogDirectSystem,
}
THREADED_SYSTEMS: dict[str, Callable[[], ThreadedSystem]] = {
    "eventsourcing": EventsourcingSystem,
}
