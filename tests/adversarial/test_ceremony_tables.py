"""Ceremony records change only through the ceremony functions, which only operators run,
and a halted ledger resumes only through its ceremony."""

from __future__ import annotations

import asyncpg
import pytest

from canonlog.application.ports import EventLog
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.migrations import check_schema
from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog
from tests.support.ceremony import resume_by_ceremony

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


BARE_RESUME = "SELECT canonlog.resume_v1('main', 'me', '{\"ticket\": \"T-1\"}')"
RUNTIME_ROLES = {"operator_only": "canonlog_operator", "writer_only": "canonlog_writer",
                 "reader_only": "canonlog_reader"}


async def test_no_runtime_role_resumes_without_the_ceremony(ceremony):
    """canonlog.resume_v1 is executable by its owner alone: the operator, the writer, the
    reader and a login in all three get 42501, and the ledger stays halted. The ceremony,
    run by a login that is only an operator, still resumes it (resume_ceremony_v1 runs
    as the owner)."""
    conn = await asyncpg.connect(ceremony.admin.uri())
    try:
        for user, role in RUNTIME_ROLES.items():
            await conn.execute(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname ="
                               f" '{user}') THEN CREATE ROLE {user} LOGIN IN ROLE {role};"
                               " END IF; END $$")
        for role in (*RUNTIME_ROLES.values(), "public"):
            assert not await conn.fetchval(
                "SELECT has_function_privilege($1, 'canonlog.resume_v1(text, text, jsonb)',"
                " 'EXECUTE')", role), role
        assert await conn.fetchval(
            "SELECT has_function_privilege('canonlog_owner',"
            " 'canonlog.resume_v1(text, text, jsonb)', 'EXECUTE')")
    finally:
        await conn.close()
    log = await AsyncpgEventLog.connect(ceremony.app.uri())
    try:
        await log.halt("main", "drill", "ops")
        head = await log.head("main")
        for dsn in (*(ceremony.admin.as_user(user).uri() for user in RUNTIME_ROLES),
                    ceremony.app.uri()):
            assert await _sqlstate(dsn, BARE_RESUME) == "42501", dsn
        assert (await log.ledger_state("main")).halted
        assert await log.head("main") == head
    finally:
        await log.close()

    operator = await AsyncpgEventLog.connect(ceremony.admin.as_user("operator_only").uri())
    try:
        sequence = await resume_by_ceremony(operator)
        assert not (await operator.ledger_state("main")).halted
        (resumed,) = await operator.read_all("main", after=sequence - 1, limit=1)
        assert resumed.event_type == "canonlog.resumed"
    finally:
        await operator.close()


def test_no_adapter_offers_a_bare_resume():
    """The port and every adapter resume only through the ceremony methods."""
    for adapter in (EventLog, MemoryEventLog, AsyncpgEventLog, PsycopgEventLog):
        assert not hasattr(adapter, "resume"), adapter
        assert hasattr(adapter, "resume_ceremony"), adapter
    assert not hasattr(MemoryEventLog(), "resume")
