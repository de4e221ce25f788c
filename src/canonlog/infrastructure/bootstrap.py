"""The composition root: builds servers, pools and adapters from Settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog

from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog, translated
from canonlog.infrastructure.postgres.embedded import EmbeddedServer, provision, start_embedded
from canonlog.infrastructure.postgres.migrations import migrate
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
