"""Ceremony and policy records change only through the ceremony functions, which only
operators run (and the administrator, who establishes a policy); the application's
login runs none of them; a halted ledger resumes only through its ceremony."""

from __future__ import annotations

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import EventLog
from canonlog.domain.errors import ApprovalRefused
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.migrations import check_schema
from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog
from tests.support.ceremony import (
    RESUME_WITNESS_KEY,
    RESUME_WITNESS_KEY_ID,
    RESUME_WITNESS_OWNER,
    policy_of,
    resume_by_ceremony,
)
from tests.support.keys import public_bytes

MUTATIONS = {
    "UPDATE canonlog.approvals SET signature = signature": "CL001",
    "DELETE FROM canonlog.approvals": "CL002",
    "TRUNCATE canonlog.approvals": "CL003",
    "UPDATE canonlog.ceremonies SET status = 'executed', closed_seq = 1": "CL004",
    "UPDATE canonlog.policies SET policy = policy": "CL001",
    "DELETE FROM canonlog.policies": "CL002",
    "TRUNCATE canonlog.policies": "CL003",
    "INSERT INTO canonlog.policies SELECT ledger_id, policy_seq + 1, policy, kind, proposal_id,"
    " established_by, established_at FROM canonlog.policies": "CL004",
    "DELETE FROM canonlog.ceremonies": "CL002",
    "TRUNCATE canonlog.ceremonies CASCADE": "CL003",
    "INSERT INTO canonlog.approvals SELECT ledger_id, proposal_id, 'w-2', signature,"
    " approved_by, approved_seq, approved_at FROM canonlog.approvals": "CL004",
}
#: What each runtime role may execute in schema canonlog; every other function is
#: refused. Governance (keys, policies, ceremonies) is the operator's alone, and
#: establishing a policy no runtime role's.
#: What every runtime role may run: the hash functions and reading an execution's events.
READING = {"event_hash_v1", "frame_text_v1", "frame_opt_text_v1", "frame_time_v1",
           "read_execution_v1"}
MAY_EXECUTE = {
    "canonlog_reader": READING,
    "canonlog_writer": READING | {"append_v2", "acquire_grant_v1", "release_grant_v1", "halt_v1"},
    "canonlog_operator": READING | {
        "halt_v1", "add_key_v2", "revoke_key_v1", "propose_failover_v2", "propose_resume_v2",
        "propose_policy_v1", "approve_v2", "execute_failover_v2", "resume_ceremony_v2",
        "execute_policy_change_v1"},
}
POLICY = policy_of(("w-1", "alice", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)),
                   ("w-2", "bob", Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)),
                   (RESUME_WITNESS_KEY_ID, RESUME_WITNESS_OWNER, RESUME_WITNESS_KEY))


@pytest.fixture
async def ceremony(database):
    admin = await AsyncpgEventLog.connect(database.admin.uri())
    await admin.establish_policy("main", POLICY, "admin")
    await admin.close()
    log = await AsyncpgEventLog.connect(database.app.uri())
    await log.acquire_grant("main", "writer-a")
    await log.close()
    operator = await AsyncpgEventLog.connect(database.operator.uri())
    proposal = await operator.propose_failover("main", "writer-b", "ops")
    await operator.approve("main", proposal, "w-1", bytes(64), "ops")
    yield database
    await operator.close()


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


async def test_a_witness_key_row_outside_the_policy_counts_for_no_approval(ceremony):
    """A witness key a superuser writes straight into the key table is not a witness of
    the policy: an approval by it is refused, however the row reads."""
    forged = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
    conn = await asyncpg.connect(ceremony.admin.uri())
    try:
        await conn.execute("SELECT set_config('canonlog.append_guard', 'on', false)")
        await conn.execute(
            "INSERT INTO canonlog.keys (ledger_id, key_id, purpose, owner_id, public_key,"
            " added_seq, added_at) VALUES ('main', 'w-root', 'witness', 'root', $1, 1, now())",
            public_bytes(forged))
    finally:
        await conn.close()
    operator = await AsyncpgEventLog.connect(ceremony.operator.uri())
    try:
        (proposal,) = [c.proposal_id for c in await operator.ceremonies("main")]
        with pytest.raises(ApprovalRefused, match="not a witness key of the policy"):
            await operator.approve("main", proposal, "w-root", bytes(64), "ops")
    finally:
        await operator.close()


@pytest.mark.parametrize("statement", MUTATIONS)
async def test_runtime_roles_hold_no_write_privilege_on_ceremonies(ceremony, statement):
    assert await _sqlstate(ceremony.app.uri(), statement) == "42501"


async def test_the_application_login_runs_no_governance_function(ceremony):
    """Every function of schema canonlog, held against what each runtime role and the
    application's and operator's logins may execute; the application's login (writer
    and reader) runs no key, policy or ceremony function."""
    conn = await asyncpg.connect(ceremony.admin.uri())
    try:
        functions = await conn.fetch(
            "SELECT p.oid, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'canonlog'")
        logins = {ceremony.app.user: MAY_EXECUTE["canonlog_writer"] | READING,
                  ceremony.operator.user: MAY_EXECUTE["canonlog_operator"]}
        for role, allowed in (*MAY_EXECUTE.items(), *logins.items(), ("public", set())):
            may = {f["proname"] for f in functions if await conn.fetchval(
                "SELECT has_function_privilege($1, $2::oid, 'EXECUTE')", role, f["oid"])}
            assert may == allowed, role
    finally:
        await conn.close()
    app = ceremony.app.uri()
    for statement in (
        "SELECT canonlog.propose_resume_v2('main', 'me')",
        "SELECT canonlog.approve_v2('main', 1, 'w-2', '\\x00'::bytea, 'me')",
        "SELECT canonlog.execute_failover_v2('main', 1, 'me')",
        "SELECT canonlog.execute_failover_v1('main', 1, 1, 'me')",
        "SELECT canonlog.add_key_v1('main', 'w-9', 'witness', 'me', '\\x00'::bytea, 'me')",
        "SELECT canonlog.establish_policy_v1('other', '{}'::jsonb, 'me')",
    ):
        assert await _sqlstate(app, statement) == "42501", statement
    operator = ceremony.operator.uri()
    assert await _sqlstate(operator, "SELECT canonlog.establish_policy_v1('x', '{}', 'me')") \
        == "42501"
    assert await _sqlstate(operator, "SELECT canonlog.resume_ceremony_v1('main', 1, 1, 0, 'me')"
                           ) == "42501"


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
