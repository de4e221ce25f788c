"""The one PostgreSQL server of a benchmark run: starting it, databases on it, its CPU time."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from canonlog.infrastructure.postgres.embedded import ensure_app_role, start_embedded
from canonlog.infrastructure.postgres.migrations import migrate

#: The login role canonlog's runtime connections use in the benchmark databases.
APP_ROLE = "canonlog_bench_app"
#: Settings shown in the report: durability, memory and WAL.
REPORTED_SETTINGS = (
    "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers",
    "wal_level", "wal_buffers", "max_wal_size", "checkpoint_timeout", "commit_delay",
    "io_method", "max_connections",
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class PgAddress:
    """Where a database is and who connects, rendered as a URI asyncpg and libpq both take."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None

    @classmethod
    def from_dsn(cls, dsn: str) -> PgAddress:
        parts = conninfo_to_dict(dsn)
        port = str(parts.get("port") or "5432").split(",")[0]
        password = parts.get("password")
        return cls(
            host=str(parts.get("host") or "localhost"),
            port=int(port),
            user=str(parts.get("user") or "postgres"),
            database=str(parts.get("dbname") or "postgres"),
            password=None if password is None else str(password),
        )

    def uri(self) -> str:
        auth = quote(self.user) + (f":{quote(self.password)}" if self.password else "")
        if self.host.startswith("/"):
            return (f"postgresql://{auth}@/{quote(self.database)}"
                    f"?host={quote(self.host)}&port={self.port}")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database)}"

    def on(self, database: str) -> PgAddress:
        return replace(self, database=database)

    def as_user(self, user: str, password: str | None) -> PgAddress:
        return replace(self, user=user, password=password)


@dataclass(frozen=True, slots=True)
class Cluster:
    """The server: a superuser address, and the postmaster's pid when it runs on this machine."""

    admin: PgAddress
    postmaster_pid: int | None
    embedded: bool
    app_password: str


def start_cluster(dsn: str | None) -> Cluster:
    """Starts an embedded server in a temporary directory, or takes the superuser DSN given.

    The embedded server stops and its directory is removed when this process exits.
    """
    password = secrets.token_hex(12)
    if dsn is not None:
        return Cluster(PgAddress.from_dsn(dsn), None, embedded=False, app_password=password)
    work = Path(tempfile.mkdtemp(prefix="canonlog-bench-"))
    # atexit runs handlers last-in first-out: registered first, the removal runs after
    # the server's own stop handler.
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    server = start_embedded(work / "pgdata", stop_at_exit=True)
    admin = PgAddress(server.socket_dir, server.port, "postgres", "postgres")
    return Cluster(admin, server.pid, embedded=True, app_password=password)


async def find_postmaster(cluster: Cluster) -> Cluster:
    """Fills in the postmaster pid of a server given by DSN when it runs on this machine."""
    if cluster.postmaster_pid is not None:
        return cluster
    conn = await asyncpg.connect(cluster.admin.uri())
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        stat = _read_stat(backend)
    finally:
        await conn.close()
    if stat is None or stat[0] != "postgres":
        return cluster
    return replace(cluster, postmaster_pid=stat[1])


async def create_database(cluster: Cluster, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(cluster.admin.uri())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


async def drop_database(cluster: Cluster, name: str) -> None:
    conn = await asyncpg.connect(cluster.admin.uri())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def settle(cluster: Cluster, database: str) -> None:
    """Leaves the server no background work on database's ledger to do during a
    measurement: its events vacuumed and analysed (autovacuum would otherwise pick up
    a freshly written ledger at any moment) and a checkpoint taken."""
    conn = await asyncpg.connect(cluster.admin.on(database).uri())
    try:
        await conn.execute("VACUUM (ANALYZE) canonlog.events")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def build_canonlog_template(cluster: Cluster, name: str) -> None:
    """A migrated canonlog database with the benchmark's login role, to clone from."""
    await create_database(cluster, name)
    conn = await asyncpg.connect(cluster.admin.on(name).uri())
    try:
        await migrate(conn)
        await ensure_app_role(conn, APP_ROLE)
        # A password, so the role can log in on a server that asks for one (--dsn).
        await conn.execute(f"ALTER ROLE {APP_ROLE} PASSWORD '{cluster.app_password}'")
    finally:
        await conn.close()


async def build_raw_template(cluster: Cluster, name: str, create_table: str) -> None:
    await create_database(cluster, name)
    conn = await asyncpg.connect(cluster.admin.on(name).uri())
    try:
        await conn.execute(create_table)
    finally:
        await conn.close()


async def server_info(cluster: Cluster) -> dict[str, Any]:
    """PostgreSQL's version and the settings that decide what a commit costs."""
    conn = await asyncpg.connect(cluster.admin.uri())
    try:
        version: str = await conn.fetchval("SELECT version()")
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            list(REPORTED_SETTINGS),
        )
    finally:
        await conn.close()
    settings = {r["name"]: _with_unit(r["setting"], r["unit"]) for r in rows}
    return {"version": version, "settings": dict(sorted(settings.items())),
            "embedded": cluster.embedded}


def _with_unit(setting: str, unit: str | None) -> str:
    if unit == "8kB" and setting.isdigit():
        return f"{int(setting) * 8 // 1024}MB"
    return f"{setting}{unit}" if unit and setting.isdigit() else setting


def _read_stat(pid: int) -> tuple[str, int, float] | None:
    """(name, parent pid, CPU seconds incl. reaped children) of a process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is state; ppid is field 4 of stat(5), utime..cstime are 14..17.
    ticks = sum(int(f) for f in fields[11:15])
    return name, int(fields[1]), ticks / _CLOCK_TICKS


def server_cpu_seconds(postmaster_pid: int | None) -> float | None:
    """CPU time of the postmaster and every process it started, live or ended.

    Backends that have exited are in the postmaster's cutime/cstime once it has
    reaped them, so the sum does not drop when a connection closes.
    """
    if postmaster_pid is None:
        return None
    own = _read_stat(postmaster_pid)
    if own is None:
        return None
    total = own[2]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None and stat[1] == postmaster_pid:
            # A live child's own time; its children (none for backends) are in cutime.
            total += stat[2]
    return total
