"""The writer refuses to start where PostgreSQL could lose an acknowledged commit, naming
the setting, wherever it was turned off: server, database, role or session."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import canonlog
from canonlog.domain.errors import UnsafeDurability
from canonlog.infrastructure.postgres.embedded import ensure_app_role
from tests.support.servers import PgTarget

UNSAFE = ["fsync", "full_page_writes", "synchronous_commit"]


def open_as(app: PgTarget, admin: PgTarget, tmp_path, dsn: str | None = None):
    return canonlog.open(canonlog.Settings(dsn=dsn or app.uri(), admin_dsn=admin.uri(),
                                           data_dir=tmp_path, log_level="critical"))


async def run(target: PgTarget, *statements: str) -> None:
    conn = await asyncpg.connect(target.uri())
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_each_unsafe_setting_off_at_server_level_is_refused_by_name(crashable, tmp_path):
    for name in UNSAFE:
        await run(crashable.server.admin, f"ALTER SYSTEM SET {name} = off",
                  "SELECT pg_reload_conf()")
        await asyncio.sleep(0.3)  # the reload reaches every backend
        try:
            with pytest.raises(UnsafeDurability, match=f"{name} is off"):
                async with open_as(crashable.app, crashable.admin, tmp_path):
                    pass
        finally:
            await run(crashable.server.admin, f"ALTER SYSTEM RESET {name}",
                      "SELECT pg_reload_conf()")
            await asyncio.sleep(0.3)
    async with open_as(crashable.app, crashable.admin, tmp_path) as log:
        await log.append("s", [canonlog.event("x", {})])


async def test_synchronous_commit_off_for_the_database_is_refused(database, tmp_path):
    await run(database.admin, f'ALTER DATABASE "{database.admin.database}" '
                              "SET synchronous_commit = off")
    with pytest.raises(UnsafeDurability, match="synchronous_commit is off"):
        async with open_as(database.app, database.admin, tmp_path):
            pass


async def test_synchronous_commit_off_for_the_role_is_refused(database, tmp_path):
    conn = await asyncpg.connect(database.admin.uri())
    try:
        await ensure_app_role(conn, "canonlog_test_unsafe_role")
        await conn.execute("ALTER ROLE canonlog_test_unsafe_role SET synchronous_commit = off")
    finally:
        await conn.close()
    try:
        with pytest.raises(UnsafeDurability, match="synchronous_commit is off"):
            async with open_as(database.app.as_user("canonlog_test_unsafe_role"),
                               database.admin, tmp_path):
                pass
    finally:
        await run(database.admin, "ALTER ROLE canonlog_test_unsafe_role RESET ALL")


async def test_synchronous_commit_off_for_the_session_is_refused(database, tmp_path):
    # The startup packet's options, as PGOPTIONS sets them for libpq; asyncpg, which
    # does not read PGOPTIONS, takes them from the connection URI.
    dsn = database.app.uri() + "&options=-c%20synchronous_commit%3Doff" \
        if "?" in database.app.uri() else database.app.uri() + "?options=-c%20synchronous_commit%3Doff"
    with pytest.raises(UnsafeDurability, match="synchronous_commit is off"):
        async with open_as(database.app, database.admin, tmp_path, dsn=dsn):
            pass


@pytest.mark.parametrize("name", ["fsync", "full_page_writes"])
async def test_postgres_itself_refuses_fsync_and_full_page_writes_below_server_level(
        database, name):
    with pytest.raises(asyncpg.CantChangeRuntimeParamError):
        await run(database.admin, f'ALTER DATABASE "{database.admin.database}" SET {name} = off')
    with pytest.raises(asyncpg.CantChangeRuntimeParamError):
        await run(database.admin, f"ALTER ROLE {database.app.user} SET {name} = off")
    with pytest.raises(asyncpg.CantChangeRuntimeParamError):
        await run(database.admin, f"SET {name} = off")
