"""The shipped expected catalogue is exactly what the shipped migrations produce.

A fresh migration into an empty database is read back and compared with
expected_catalogue.txt. After a change to the migrations, rebuild the file with
CANONLOG_WRITE_CATALOGUE=1 pytest tests/integration/test_catalogue.py, and read
its diff: every changed line is a change of who may do what.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

from canonlog.infrastructure.postgres import catalogue
from canonlog.infrastructure.postgres.catalogue import (
    catalogue_problems,
    expected_catalogue,
    installed_catalogue,
)
from canonlog.infrastructure.postgres.migrations import check_schema, migrate


async def test_a_fresh_migration_produces_the_expected_catalogue(pg_admin):
    name = f"canonlog_fresh_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin.uri())
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(pg_admin.on(name).uri())
        try:
            await migrate(conn)
            installed = await installed_catalogue(conn)
            if os.environ.get("CANONLOG_WRITE_CATALOGUE"):
                path = Path(catalogue.__file__).with_name(catalogue.EXPECTED_FILE)
                path.write_text("".join(f"{fact}\n" for fact in sorted(installed)), "utf-8")
                expected_catalogue.cache_clear()
            assert sorted(installed - expected_catalogue()) == []
            assert sorted(expected_catalogue() - installed) == []
            assert await catalogue_problems(conn) == []
            assert (await check_schema(conn)).ok
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def test_the_expected_catalogue_names_every_kind_of_fact():
    facts = expected_catalogue()
    for start in ("grant EXECUTE on function canonlog.", "grant SELECT on table canonlog.events to",
                  "trigger CREATE TRIGGER events_guard_insert", "role canonlog_writer is NOSUPERUSER",
                  "table canonlog.events is owned by canonlog_owner"):
        assert any(fact.startswith(start) for fact in facts), start
    assert any("SECURITY DEFINER with search_path=pg_catalog, pg_temp" in f for f in facts)
