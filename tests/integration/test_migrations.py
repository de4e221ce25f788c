"""Migrations apply on every supported PostgreSQL, and databases that applied an earlier
text of an edited migration keep working."""

from __future__ import annotations

import hashlib
import os
import re
import uuid

import asyncpg
import pytest

from canonlog.domain.errors import MigrationError
from canonlog.infrastructure.postgres.migrations import (
    SUPERSEDED_CHECKSUMS,
    check_schema,
    migrate,
    require_supported,
    shipped_migrations,
)
from canonlog.infrastructure.postgres.queries import QUERIES
from tests.support.servers import drop, requested_version

# The DO block that defines is_json_object_v1 per server version, with its comment.
_VERSIONED_JSON_CHECK = re.compile(r"--\n-- IS JSON is PostgreSQL 16 syntax.*?\n\$do\$;\n", re.DOTALL)
_CREATE = re.compile(r"CREATE FUNCTION canonlog\.is_json_object_v1.*?\$body\$.*?\$body\$", re.DOTALL)


def append_path_before_portability() -> str:
    """The text of 0002 that PostgreSQL 16 and later databases applied before it was portable."""
    current = shipped_migrations()[1].sql
    block = _VERSIONED_JSON_CHECK.search(current)
    assert block is not None
    create = _CREATE.search(block[0])
    assert create is not None
    return current[:block.start()] + create[0] + ";\n" + current[block.end():]


@pytest.fixture
async def admin(database):
    conn = await asyncpg.connect(database.admin.uri())
    yield conn
    await conn.close()


@pytest.fixture
async def empty_database(pg_admin):
    name = f"canonlog_empty_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    target = pg_admin.on(name)
    conn = await asyncpg.connect(target.uri())
    yield conn
    await conn.close()
    await drop(pg_admin, target)


async def test_the_schema_report_names_the_server_version(admin):
    report = await check_schema(admin)
    assert report.ok, report.problems
    major = int(await admin.fetchval("SELECT current_setting('server_version_num')")) // 10000
    assert report.server_version.split(".")[0] == str(major)
    if "CANONLOG_TEST_DSN" not in os.environ:
        assert major == requested_version()


@pytest.mark.parametrize(("version_num", "version"), [(130012, "13.12"), (90624, "9.6.24")])
def test_servers_older_than_14_are_refused_by_name(version_num, version):
    with pytest.raises(MigrationError, match=rf"PostgreSQL {re.escape(version)} is not supported"
                                             r".*14 or newer"):
        require_supported(version_num, version)


def test_14_and_later_are_supported():
    for version_num in (140000, 150018, 160002, 170011, 180001, 190000):
        require_supported(version_num, str(version_num))


def test_the_earlier_append_path_text_is_the_one_listed_as_superseded():
    earlier = append_path_before_portability()
    assert hashlib.sha256(earlier.encode()).hexdigest() in SUPERSEDED_CHECKSUMS[2]


async def test_a_superseded_checksum_is_accepted_and_an_unknown_one_refused(admin):
    (superseded,) = SUPERSEDED_CHECKSUMS[2]
    await admin.execute("UPDATE canonlog.schema_migrations SET checksum = $1 WHERE version = 2",
                        superseded)
    assert await migrate(admin) == []
    await admin.execute("UPDATE canonlog.schema_migrations SET checksum = $1 WHERE version = 2",
                        "0" * 64)
    with pytest.raises(MigrationError, match="0002_append_path was applied with checksum 000000000000"):
        await migrate(admin)


async def test_a_database_migrated_with_the_earlier_text_upgrades_and_passes_the_check(
        empty_database):
    conn = empty_database
    if int(await conn.fetchval("SELECT current_setting('server_version_num')")) < 160000:
        pytest.skip("the earlier text of 0002 never applied before PostgreSQL 16")
    await conn.execute(QUERIES["migrations_bootstrap"])
    core = shipped_migrations()[0]
    earlier = append_path_before_portability()
    for version, name, sql in [(1, core.name, core.sql), (2, "append_path", earlier)]:
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute("RESET ROLE")
            await conn.execute(QUERIES["migrations_record"], version, name,
                               hashlib.sha256(sql.encode()).hexdigest())
    applied = await migrate(conn)
    assert [m.version for m in applied] == [m.version for m in shipped_migrations()[2:]]
    report = await check_schema(conn)
    assert report.ok, report.problems


JSON_CHECKS = {
    "an object": (b'{"a": [1, 2.5e3, null, true]}', True),
    "an empty object": (b"{}", True),
    "duplicate keys": (b'{"a": 1, "a": 2}', True),
    "an array": (b"[1, 2]", False),
    "a string": (b'"text"', False),
    "truncated text": (b'{"a": ', False),
    "trailing text": (b'{"a": 1} x', False),
    "NaN": (b'{"a": NaN}', False),
    "an object with an escape": (b'{"a": "\\u00e9"}', True),
    "an object beyond the grammar-only size": (b'{"a": "' + b"x" * 16000 + b'"}', True),
    "an array with an exponent of four digits": (b"[1e1000]", False),
    "NULL": (None, False),
}


@pytest.mark.parametrize(("payload", "expected"), JSON_CHECKS.values(), ids=JSON_CHECKS)
async def test_the_json_object_check_answers_alike_on_every_version(admin, payload, expected):
    assert await admin.fetchval("SELECT canonlog.is_json_object_v1($1)", payload) is expected


JSONB_REFUSES = {
    "an escaped U+0000": (b'{"a": "\\u0000"}', "22P05"),
    "a short escape": (b'{"a": "\\u12"}', "22P02"),
    "a huge exponent": (b'{"a": 1e99999999}', "22003"),
    "text with an escape": (b'{"a": "\\u00e9"', "22P02"),
    "invalid UTF-8": (b'{"a": "\xff"}', "22021"),
}


@pytest.mark.parametrize(("payload", "sqlstate"), JSONB_REFUSES.values(), ids=JSONB_REFUSES)
async def test_text_that_jsonb_refuses_raises_the_same_error_on_every_version(admin, payload,
                                                                              sqlstate):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await admin.fetchval("SELECT canonlog.is_json_object_v1($1)", payload)
    assert raised.value.sqlstate == sqlstate


async def test_a_login_without_the_rights_to_migrate_gets_a_migration_error(database):
    conn = await asyncpg.connect(database.app.uri())
    try:
        login = re.escape(database.app.user)
        with pytest.raises(MigrationError, match=f"cannot migrate as login {login}: .*"
                                                 "CANONLOG_ADMIN_DSN"):
            await migrate(conn)
    finally:
        await conn.close()


def test_a_skipped_number_is_allowed_but_never_applied_below_the_database_newest():
    """Migration numbers are reserved per change, so a release may skip one; a database
    that has a later migration never gets an earlier one applied out of order."""
    from datetime import UTC, datetime

    from canonlog.infrastructure.postgres.migrations import (
        AppliedMigration,
        Migration,
        _check_history,
    )
    shipped = (Migration(1, "core", "a"), Migration(5, "late", "b"), Migration(9, "next", "c"))
    at = datetime.now(UTC)
    applied = {m.version: AppliedMigration(m.version, m.name, m.checksum, at)
               for m in shipped}
    _check_history(shipped, applied)
    _check_history(shipped, {1: applied[1]})
    with pytest.raises(MigrationError, match="0005_late is older than migration 0009"):
        _check_history(shipped, {1: applied[1], 9: applied[9]})
