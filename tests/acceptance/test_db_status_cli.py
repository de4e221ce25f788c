"""`canonlog db status` names the server's PostgreSQL version beside the schema report."""

from __future__ import annotations

import asyncpg

from tests.support.cli import Cli


async def test_db_status_reports_the_server_version(database):
    conn = await asyncpg.connect(database.admin.uri())
    try:
        version = await conn.fetchval("SELECT current_setting('server_version')")
    finally:
        await conn.close()
    cli = Cli(database.app.uri(), database.admin.uri())
    status = (await cli.ok("db", "status", "--json")).json()
    assert status["server_version"] == version
    assert status["integrity_ok"]
    text = await cli.ok("db", "status")
    assert text.lines()[0] == f"PostgreSQL {version}"
