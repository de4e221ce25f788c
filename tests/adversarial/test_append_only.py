"""Recorded history cannot be changed by any role, the table owner included."""

from __future__ import annotations

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.domain.errors import AppendOnlyViolation, DirectInsertRefused
from canonlog.domain.events import AppendRequest, NewEvent, WriteContext
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog, translated
from canonlog.infrastructure.postgres.migrations import (
    check_schema,
    shipped_functions,
    shipped_triggers,
)
from tests.support.ceremony import policy_of

MUTATIONS = {
    "UPDATE canonlog.events SET payload = '\\x7b7d' WHERE seq = 2": "CL001",
    "DELETE FROM canonlog.events WHERE seq = 2": "CL002",
    "TRUNCATE canonlog.events": "CL003",
    "TRUNCATE canonlog.events CASCADE": "CL003",
    "UPDATE canonlog.executions SET first_seq = 1": "CL001",
    "DELETE FROM canonlog.executions": "CL002",
    "TRUNCATE canonlog.executions": "CL003",
    "DELETE FROM canonlog.ledgers": "CL002",
    "TRUNCATE canonlog.ledgers CASCADE": "CL003",
    "UPDATE canonlog.ledgers SET halted = false": "CL004",
}
DIRECT_INSERT = (
    "INSERT INTO canonlog.events SELECT ledger_id, seq + 1000, gen_random_uuid(), stream_id,"
    " stream_version + 1000, event_type, payload, metadata, task_id, execution_id,"
    " correlation_id, causation_id, agent_id, writer_id, epoch, writer_time, recorded_at,"
    " hash_version, prev_hash, hash FROM canonlog.events WHERE seq = 2"
)


@pytest.fixture
async def ledger(database):
    log = await AsyncpgEventLog.connect(database.app.uri())
    grant = await log.acquire_grant("main", "writer-a")
    await log.append(grant, AppendRequest.create(
        "s", [NewEvent.create("x", {"n": 1})], context=WriteContext(execution_id="e1")))
    yield database
    await log.close()


async def _error(dsn: str, statement: str, *, setup: tuple[str, ...] = ()) -> asyncpg.PostgresError | None:
    conn = await asyncpg.connect(dsn)
    try:
        for line in setup:
            await conn.execute(line)
        await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        return exc
    finally:
        await conn.close()
    return None


async def _sqlstate(dsn: str, statement: str, *, setup: tuple[str, ...] = ()) -> str | None:
    error = await _error(dsn, statement, setup=setup)
    return None if error is None else error.sqlstate


@pytest.mark.parametrize(("statement", "sqlstate"), MUTATIONS.items())
async def test_the_table_owner_cannot_change_history(ledger, statement, sqlstate):
    assert await _sqlstate(ledger.admin.uri(), statement,
                           setup=("SET ROLE canonlog_owner",)) == sqlstate


@pytest.mark.parametrize(("statement", "sqlstate"), MUTATIONS.items())
async def test_a_superuser_in_replica_mode_still_cannot_change_history(ledger, statement, sqlstate):
    """The triggers are ENABLE ALWAYS: session_replication_role = replica does not skip them."""
    assert await _sqlstate(ledger.admin.uri(), statement,
                           setup=("SET session_replication_role = replica",)) == sqlstate


@pytest.mark.parametrize("statement", [*MUTATIONS, DIRECT_INSERT])
async def test_runtime_roles_hold_no_write_privilege(ledger, statement):
    assert await _sqlstate(ledger.app.uri(), statement) == "42501"


async def test_direct_inserts_by_owner_or_superuser_are_refused(ledger):
    assert await _sqlstate(ledger.admin.uri(), DIRECT_INSERT,
                           setup=("SET ROLE canonlog_owner",)) == "CL004"
    assert await _sqlstate(ledger.admin.uri(), DIRECT_INSERT) == "CL004"
    assert await _sqlstate(ledger.admin.uri(), DIRECT_INSERT,
                           setup=("SET session_replication_role = replica",)) == "CL004"


@pytest.mark.parametrize("statement", [
    "SET session_replication_role = replica",
    "ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_update",
    "ALTER TABLE canonlog.events DISABLE TRIGGER ALL",
    "DROP TRIGGER events_refuse_delete ON canonlog.events",
    "CREATE OR REPLACE FUNCTION canonlog.refuse_change_v1() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "SET ROLE canonlog_owner",
    "DROP TABLE canonlog.events",
    "ALTER TABLE canonlog.events OWNER TO canonlog_app",
])
async def test_runtime_roles_cannot_disarm_the_triggers(ledger, statement):
    assert await _sqlstate(ledger.app.uri(), statement) == "42501"


async def test_runtime_roles_own_nothing_and_are_not_superusers(ledger):
    conn = await asyncpg.connect(ledger.admin.uri())
    try:
        for role in ("canonlog_writer", "canonlog_reader", "canonlog_operator", "canonlog_test_app"):
            row = await conn.fetchrow(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
                " WHERE rolname = $1", role)
            assert not any(row.values()), role
            owned = await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
                " WHERE r.rolname = $1", role)
            assert owned == 0, role
            member_of_owner = await conn.fetchval(
                "SELECT pg_has_role($1, 'canonlog_owner', 'MEMBER')", role)
            assert not member_of_owner, role
    finally:
        await conn.close()


async def test_readers_cannot_append_halt_or_take_the_grant(ledger):
    conn = await asyncpg.connect(ledger.admin.uri())
    try:
        await conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE"
                           " rolname = 'reader_only') THEN CREATE ROLE reader_only LOGIN IN ROLE"
                           " canonlog_reader; END IF; END $$")
    finally:
        await conn.close()
    reader = ledger.admin.as_user("reader_only").uri()
    assert await _sqlstate(reader, "SELECT canonlog.acquire_grant_v1('main', 'r')") == "42501"
    assert await _sqlstate(reader, "SELECT canonlog.halt_v1('main', 'r', 'r')") == "42501"
    assert await _sqlstate(reader, "SELECT * FROM canonlog.append_v2('main', 'w', 1, NULL,"
                           " '{s}', '{NULL}', '{NULL}', '{1}', '{NULL}', '{NULL}', '{NULL}',"
                           " '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{x}', '{\"\\\\x7b7d\"}',"
                           " '{\"\\\\x7b7d\"}', '{NULL}', '{NULL}')") == "42501"
    assert await _sqlstate(reader, "SELECT * FROM canonlog.executions") == "42501"
    # What an execution id produced is read through a function that answers with events.
    assert await _sqlstate(reader, "SELECT * FROM canonlog.read_execution_v1('main', 'x')") \
        is None


async def test_violations_map_to_canonlog_errors(ledger):
    conn = await asyncpg.connect(ledger.admin.uri())
    try:
        await conn.execute("SET ROLE canonlog_owner")
        with pytest.raises(AppendOnlyViolation, match="UPDATE refused"):
            async with translated():
                await conn.execute("UPDATE canonlog.events SET seq = seq")
        with pytest.raises(AppendOnlyViolation, match="DELETE refused"):
            async with translated():
                await conn.execute("DELETE FROM canonlog.events")
        with pytest.raises(AppendOnlyViolation, match="TRUNCATE refused"):
            async with translated():
                await conn.execute("TRUNCATE canonlog.events")
        with pytest.raises(DirectInsertRefused):
            async with translated():
                await conn.execute(DIRECT_INSERT)
    finally:
        await conn.close()


#: What each refusing trigger's operation looks like, on any table.
OPERATIONS = {
    "update": ("UPDATE canonlog.{table} SET ledger_id = ledger_id", "CL001", "UPDATE"),
    "delete": ("DELETE FROM canonlog.{table}", "CL002", "DELETE"),
    "truncate": ("TRUNCATE canonlog.{table} CASCADE", "CL003", "TRUNCATE"),
}
WITNESSED = policy_of(("w-1", "alice", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)))
REFUSING = sorted(
    (table, trigger) for (table, trigger), function in shipped_triggers().items()
    if function == "refuse_change_v1"
)


@pytest.fixture
async def every_table(ledger):
    """The ledger with a row in every canonlog table, for row-level triggers to fire on."""
    admin = await AsyncpgEventLog.connect(ledger.admin.uri())
    operator = await AsyncpgEventLog.connect(ledger.operator.uri())
    try:
        await admin.establish_policy("main", WITNESSED, "admin")
        await operator.add_key("main", "a-1", "agent", "agent-1", bytes([3]) * 32, "ops")
        proposal = await operator.propose_failover("main", "writer-b", "ops")
        await operator.approve("main", proposal, "w-1", bytes(64), "ops")
    finally:
        await operator.close()
        await admin.close()
    return ledger


def test_one_trigger_function_refuses_every_change_to_history():
    assert len(REFUSING) == 18
    assert not {"refuse_update_v1", "refuse_delete_v1", "refuse_truncate_v1"} & set(
        shipped_functions())


@pytest.mark.parametrize("setup", ["SET ROLE canonlog_owner", "SET session_replication_role = replica"])
@pytest.mark.parametrize(("table", "trigger"), REFUSING)
async def test_each_refusing_trigger_refuses_its_operation(every_table, table, trigger, setup):
    statement, sqlstate, operation = OPERATIONS[trigger.rsplit("_", 1)[1]]
    error = await _error(every_table.admin.uri(), statement.format(table=table), setup=(setup,))
    assert error is not None and error.sqlstate == sqlstate
    assert str(error) == f"canonlog: canonlog.{table} is append-only; {operation} refused"


async def test_the_schema_check_catches_a_refusing_trigger_disabled_redirected_or_rewritten(
    every_table,
):
    admin = await asyncpg.connect(every_table.admin.uri())
    try:
        assert (await check_schema(admin)).ok
        await admin.execute("ALTER TABLE canonlog.approvals DISABLE TRIGGER approvals_refuse_update")
        await admin.execute("CREATE FUNCTION canonlog.allow_v1() RETURNS trigger LANGUAGE plpgsql"
                            " AS $$ BEGIN RETURN OLD; END $$")
        await admin.execute("CREATE OR REPLACE TRIGGER keys_refuse_delete BEFORE DELETE ON"
                            " canonlog.keys FOR EACH ROW EXECUTE FUNCTION canonlog.allow_v1()")
        await admin.execute("CREATE OR REPLACE FUNCTION canonlog.refuse_change_v1() RETURNS"
                            " trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
        report = await check_schema(admin)
        # The catalogue comparison names the same changes again, in its own words.
        assert set(report.problems) >= {
            "trigger approvals_refuse_update on canonlog.approvals is disabled, not ALWAYS",
            "trigger keys_refuse_delete on canonlog.keys calls allow_v1, not refuse_change_v1",
            "trigger keys_refuse_delete on canonlog.keys is enabled only for origin sessions,"
            " not ALWAYS",
            "function canonlog.refuse_change_v1 differs from the shipped definition",
        }
    finally:
        await admin.close()
