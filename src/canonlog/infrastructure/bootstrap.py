"""The composition root: builds servers, pools and adapters from Settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog

from canonlog.application.client import LedgerClient
from canonlog.application.ports import HaltChannel, HeadStore, WriterLease
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.infrastructure.checkpoint_store import checkpoint_publisher, trusted_checkpoints
from canonlog.infrastructure.head_store import FileHeadStore
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog, translated
from canonlog.infrastructure.postgres.embedded import EmbeddedServer, provision, start_embedded
from canonlog.infrastructure.postgres.inspector import PostgresInspector
from canonlog.infrastructure.postgres.migrations import migrate
from canonlog.infrastructure.postgres.notifier import PostgresNotifier
from canonlog.infrastructure.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Structured logs to stderr: JSON for machines, key=value for people."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


@dataclass(frozen=True, slots=True)
class Connections:
    """Where the runtime role and the administrator connect."""

    dsn: str
    admin_dsn: str | None
    embedded: EmbeddedServer | None


async def prepare_database(settings: Settings) -> Connections:
    """Starts the embedded server or reaches the configured one, and migrates it."""
    if settings.embedded:
        server = start_embedded(settings.data_dir / "pgdata", stop_at_exit=True)
        await provision(server)
        return Connections(server.dsn(), server.admin_dsn, server)
    assert settings.dsn is not None
    admin = settings.admin_dsn or settings.dsn
    if settings.migrate_on_start:
        async with translated():
            conn = await asyncpg.connect(admin)
            try:
                await migrate(conn)
            finally:
                await conn.close()
    return Connections(settings.dsn, admin, None)


@asynccontextmanager
async def open_event_log(settings: Settings) -> AsyncIterator[tuple[AsyncpgEventLog, Connections]]:
    """Yields the asyncpg EventLog for the configured database, closing it afterwards."""
    connections = await prepare_database(settings)
    log = await AsyncpgEventLog.connect(connections.dsn, max_size=settings.pool_size)
    try:
        yield log, connections
    finally:
        await log.close()


def writer_config(settings: Settings) -> WriterConfig:
    return WriterConfig(
        ledger_id=settings.ledger,
        writer_id=settings.writer_id,
        max_batch_requests=settings.batch_max_requests,
        max_batch_events=settings.batch_max_events,
        max_wait=settings.batch_max_wait,
        lease_renew_interval=settings.lease_renew_interval,
        tail_events=settings.tail_events,
    )


@asynccontextmanager
async def open_ledger(settings: Settings | None = None) -> AsyncIterator[LedgerClient]:
    """Yields a verified, writing LedgerClient for settings.ledger; stops the writer on exit.

    The lease is Redis's when settings.redis_url is set, else a PostgreSQL advisory
    lock; halt state is read from the database and, with Redis, from its halt key.
    """
    settings = settings or Settings()
    if not structlog.is_configured():
        # An application that configures structlog keeps its configuration;
        # otherwise canonlog logs at CANONLOG_LOG_LEVEL rather than structlog's
        # default of every level to stdout.
        configure_logging(settings)
    async with open_event_log(settings) as (event_log, connections):
        lease: WriterLease
        # The database's halt flag is checked by the append itself, under the ledger
        # lock; Redis adds a channel every process sees at once.
        channels: list[HaltChannel] = []
        redis_client = None
        if settings.redis_url:
            import redis.asyncio as redis

            from canonlog.infrastructure.redis.halt import RedisHaltChannel
            from canonlog.infrastructure.redis.lease import RedisLease

            redis_client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=settings.lease_renew_interval,
                socket_connect_timeout=settings.lease_renew_interval,
            )
            lease = RedisLease(redis_client, settings.ledger, settings.writer_id,
                               ttl=settings.lease_ttl)
            channels.append(RedisHaltChannel(redis_client))
        else:
            from canonlog.infrastructure.postgres.lease import AdvisoryLockLease

            lease = AdvisoryLockLease(connections.dsn, settings.ledger, settings.writer_id,
                                      ttl=settings.lease_ttl)
        # Signed checkpoints: trusted at startup, published in the background.
        heads: HeadStore = FileHeadStore(settings.data_dir / "writer")
        publisher = checkpoint_publisher(settings, event_log, settings.ledger)
        if publisher is not None:
            heads = publisher.watching(heads)
        writer = EventWriterService(
            event_log, lease, channels, heads,
            writer_config(settings), inspector=PostgresInspector(event_log.pool),
            checkpoints=trusted_checkpoints(settings, settings.ledger),
        )
        notifier = PostgresNotifier(connections.dsn)
        try:
            await writer.start()
            if publisher is not None:
                publisher.start()
            yield LedgerClient(writer, event_log, settings.ledger, notifier=notifier,
                               limits=settings.limits)
        finally:
            await writer.stop()
            if publisher is not None:
                await publisher.stop()
            await notifier.close()
            if redis_client is not None:
                await redis_client.aclose()
