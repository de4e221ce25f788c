"""Real servers for the tests: one named by CANONLOG_TEST_DSN, or one the tests start.

CANONLOG_TEST_PG picks the major version started (14 to 18, default 18, the
embedded PostgreSQL); tests.support.postgres_versions says where each comes from.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import asyncpg

from canonlog.infrastructure.postgres.embedded import (
    ensure_app_role,
    ensure_operator_role,
    start_embedded,
)
from canonlog.infrastructure.postgres.migrations import migrate
from tests.support import postgres_versions

APP_ROLE = "canonlog_test_app"
OPERATOR_ROLE = "canonlog_test_ops"


@dataclass(frozen=True)
class PgTarget:
    """Where a database is and who connects: rendered as a URI asyncpg and libpq both take."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None

    def uri(self) -> str:
        auth = quote(self.user) + (f":{quote(self.password)}" if self.password else "")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{quote(self.database)}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database)}"

    def as_user(self, user: str, password: str | None = None) -> PgTarget:
        return replace(self, user=user, password=password)

    def on(self, database: str) -> PgTarget:
        return replace(self, database=database)


def parse_uri(dsn: str) -> PgTarget:
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return PgTarget(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        database=unquote(parts.path.lstrip("/") or "postgres"),
        password=unquote(parts.password) if parts.password else None,
    )


def requested_version() -> int:
    """The major version CANONLOG_TEST_PG asks for (default 18); raises ValueError if unsupported."""
    raw = os.environ.get("CANONLOG_TEST_PG", "").strip() or str(postgres_versions.DEFAULT)
    if not raw.isdigit() or int(raw) not in postgres_versions.SUPPORTED:
        raise ValueError(f"CANONLOG_TEST_PG={raw!r}: expected one of {postgres_versions.SUPPORTED}")
    return int(raw)


def admin_target() -> PgTarget:
    """A superuser connection: CANONLOG_TEST_DSN, or a fresh server of CANONLOG_TEST_PG's version."""
    dsn = os.environ.get("CANONLOG_TEST_DSN")
    if dsn:
        return parse_uri(dsn)
    version = requested_version()
    if version != postgres_versions.DEFAULT:
        local = postgres_versions.start(version)
        return PgTarget(host=str(local.socket_dir), port=local.port, user="postgres",
                        database="postgres")
    data_dir = Path(tempfile.mkdtemp(prefix="canonlog-test-")) / "pgdata"
    server = start_embedded(data_dir, stop_at_exit=True)
    return PgTarget(host=server.socket_dir, port=server.port, user="postgres", database="postgres")


async def build_template(admin: PgTarget) -> PgTarget:
    """Creates a migrated template database, the app and operator logins; returns its target."""
    name = f"canonlog_template_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(admin.on(name).uri())
    try:
        await migrate(conn)
        await ensure_app_role(conn, APP_ROLE)
        await ensure_operator_role(conn, OPERATOR_ROLE)
    finally:
        await conn.close()
    return admin.on(name)


async def clone(admin: PgTarget, template: PgTarget) -> PgTarget:
    name = f"canonlog_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.database}"')
    finally:
        await conn.close()
    return admin.on(name)


async def drop(admin: PgTarget, database: PgTarget) -> None:
    conn = await asyncpg.connect(admin.uri())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database.database}" WITH (FORCE)')
    finally:
        await conn.close()
