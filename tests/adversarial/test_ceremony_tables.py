"""Ceremony records change only through the ceremony functions, which only operators run."""

from __future__ import annotations

import asyncpg
import pytest

from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.migrations import check_schema

MUTATIONS = {
    "UPDATE canonlog.approvals SET signature = signature": "CL001",
    "DELETE FROM canonlog.approvals": "CL002",
    "TRUNCATE canonlog.approvals": "CL003",
    "UPDATE canonlog.ceremonies SET status = 'executed', closed_seq = 1": "CL004",
    "DELETE FROM canonlog.ceremonies": "CL002",
    "TRUNCATE canonlog.ceremonies CASCADE": "CL003",
    "INSERT INTO canonlog.approvals SELECT ledger_id, proposal_id, 'w-2', signature,"
    " approved_by, approved_seq, approved_at FROM canonlog.approvals": "CL004",
}
OPERATOR_ONLY = [
    "SELECT canonlog.propose_failover_v1('main', 'writer-b', 'me')",
    "SELECT canonlog.propose_resume_v1('main', 'me')",
    "SELECT canonlog.approve_v1('main', 1, 'w-2', '\\x00'::bytea, 'me')",
    "SELECT canonlog.execute_failover_v1('main', 1, 1, 'me')",
    "SELECT canonlog.resume_ceremony_v1('main', 1, 1, 0, 'me')",
]


@pytest.fixture
async def ceremony(database):
    log = await AsyncpgEventLog.connect(database.app.uri())
    await log.acquire_grant("main", "writer-a")
    await log.add_key("main", "w-1", "witness", "alice", bytes([1]) * 32, "ops")
    await log.add_key("main", "w-2", "witness", "bob", bytes([2]) * 32, "ops")
    proposal = await log.propose_failover("main", "writer-b", "ops")
    await log.approve("main", proposal, "w-1", bytes(64), "ops")
    yield database
    await log.close()


async def _sqlstate(dsn: str, statement: str, *, setup: tuple[str, ...] = ()) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        for line in setup:
            await conn.execute(line)
        await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        return exc.sqlstate
    finally:
        await conn.close()
    return None


@pytest.mark.parametrize(("statement", "sqlstate"), MUTATIONS.items())
async def test_owner_and_superuser_in_replica_mode_cannot_change_ceremonies(
    ceremony, statement, sqlstate
):
    assert await _sqlstate(ceremony.admin.uri(), statement,
                           setup=("SET ROLE canonlog_owner",)) == sqlstate
    assert await _sqlstate(ceremony.admin.uri(), statement,
                           setup=("SET session_replication_role = replica",)) == sqlstate


@pytest.mark.parametrize("statement", MUTATIONS)
async def test_runtime_roles_hold_no_write_privilege_on_ceremonies(ceremony, statement):
    assert await _sqlstate(ceremony.app.uri(), statement) == "42501"


async def test_only_the_operator_role_runs_ceremonies(ceremony):
    conn = await asyncpg.connect(ceremony.admin.uri())
    try:
        await conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname ="
                           " 'writer_only') THEN CREATE ROLE writer_only LOGIN IN ROLE"
                           " canonlog_writer; END IF; IF NOT EXISTS (SELECT FROM pg_roles WHERE"
                           " rolname = 'reader_only') THEN CREATE ROLE reader_only LOGIN IN ROLE"
                           " canonlog_reader; END IF; END $$")
    finally:
        await conn.close()
    for user in ("writer_only", "reader_only"):
        dsn = ceremony.admin.as_user(user).uri()
        for statement in OPERATOR_ONLY:
            assert await _sqlstate(dsn, statement) == "42501", (user, statement)
        assert await _sqlstate(dsn, "SELECT * FROM canonlog.approvals") == "42501"
    app = ceremony.app.uri()
    assert await _sqlstate(app, "SELECT * FROM canonlog.counted_approvals_v1('main', 1)") == "42501"
    assert await _sqlstate(app, "SELECT canonlog.format_duration_v1(1)") == "42501"


async def test_the_schema_check_covers_the_ceremony_triggers(ceremony):
    conn = await asyncpg.connect(ceremony.admin.uri())
    try:
        assert (await check_schema(conn)).ok
        await conn.execute("ALTER TABLE canonlog.approvals DISABLE TRIGGER approvals_refuse_update")
        await conn.execute("ALTER TABLE canonlog.ceremonies ENABLE TRIGGER ceremonies_guard_write")
        problems = (await check_schema(conn)).problems
    finally:
        await conn.close()
    assert "trigger approvals_refuse_update on canonlog.approvals is disabled, not ALWAYS" in problems
    assert ("trigger ceremonies_guard_write on canonlog.ceremonies is enabled only for origin "
            "sessions, not ALWAYS") in problems
