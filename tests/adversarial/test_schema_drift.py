"""A superuser who loosens the schema is named by `canonlog db status` and stops the writer.

Each test changes one thing as a superuser the way an attacker (or a careless
administrator) would: a privilege, a role membership, a function's settings or
security mode, a trigger, an owner. The real `canonlog db status` must then exit
3 naming the change, and canonlog.open() must refuse to start the writer.
"""

from __future__ import annotations

import asyncpg
import pytest

import canonlog
from canonlog.domain.errors import UnsafeLogin, WriterInconsistency
from tests.support.cli import Cli
from tests.support.servers import APP_ROLE

#: (what the superuser runs, what db status names, how it undoes it, the writer's error)
DRIFTS = {
    "execute on an owner-only function": (
        ["GRANT EXECUTE ON FUNCTION canonlog.resume_v1(text, text, jsonb) TO canonlog_writer"],
        "not defined by the migrations: grant EXECUTE on function "
        "canonlog.resume_v1(text, text, jsonb) to canonlog_writer",
        [], WriterInconsistency),
    "insert and update on events": (
        ["GRANT INSERT, UPDATE ON canonlog.events TO canonlog_writer"],
        "not defined by the migrations: grant UPDATE on table canonlog.events to canonlog_writer",
        [], WriterInconsistency),
    "a revoked grant": (
        ["REVOKE SELECT ON canonlog.keys FROM canonlog_reader"],
        "expected but missing: grant SELECT on table canonlog.keys to canonlog_reader",
        [], WriterInconsistency),
    "update on one column of events": (
        ["GRANT UPDATE (payload) ON canonlog.events TO canonlog_writer"],
        "grant UPDATE on column payload of canonlog.events to canonlog_writer",
        [], WriterInconsistency),
    "search_path reset on a security definer": (
        ["ALTER FUNCTION canonlog.acquire_grant_v1(text, text) RESET search_path"],
        "not defined by the migrations: function canonlog.acquire_grant_v1(text, text) is "
        "SECURITY DEFINER with no settings",
        [], WriterInconsistency),
    "security invoker": (
        ["ALTER FUNCTION canonlog.halt_v1(text, text, text) SECURITY INVOKER"],
        "function canonlog.halt_v1(text, text, text) is SECURITY INVOKER",
        [], WriterInconsistency),
    "runtime role in the owner role": (
        ["GRANT canonlog_owner TO canonlog_reader"],
        "role canonlog_reader is a member of canonlog_owner",
        # the app login reads too, so it is now a member of the owner role itself
        ["REVOKE canonlog_owner FROM canonlog_reader"], UnsafeLogin),
    "app login in the owner role": (
        [f"GRANT canonlog_owner TO {APP_ROLE}"],
        f"role {APP_ROLE} is a member of canonlog_owner",
        [f"REVOKE canonlog_owner FROM {APP_ROLE}"], UnsafeLogin),
    "app login a superuser": (
        [f"ALTER ROLE {APP_ROLE} SUPERUSER"],
        f"role {APP_ROLE} is a superuser",
        [f"ALTER ROLE {APP_ROLE} NOSUPERUSER"], UnsafeLogin),
    "an extra trigger": (
        ["CREATE TRIGGER extra BEFORE INSERT ON canonlog.events "
         "FOR EACH ROW EXECUTE FUNCTION canonlog.guard_write_v1()"],
        "not defined by the migrations: trigger CREATE TRIGGER extra BEFORE INSERT ON "
        "canonlog.events",
        [], WriterInconsistency),
    "a disabled trigger": (
        ["ALTER TABLE canonlog.keys DISABLE TRIGGER keys_refuse_delete"],
        "trigger keys_refuse_delete on canonlog.keys is disabled, not ALWAYS",
        [], WriterInconsistency),
    "a table owned by another role": (
        ["ALTER TABLE canonlog.keys OWNER TO canonlog_operator"],
        "not defined by the migrations: table canonlog.keys is owned by canonlog_operator",
        [], WriterInconsistency),
    "a table owned by the app login": (
        [f"ALTER TABLE canonlog.ledgers OWNER TO {APP_ROLE}"],
        f"role {APP_ROLE} owns canonlog.ledgers",
        [], UnsafeLogin),
}


def settings_for(database, tmp_path) -> canonlog.Settings:
    return canonlog.Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                             data_dir=tmp_path / "writer")


async def start_writer(settings: canonlog.Settings) -> None:
    async with canonlog.open(settings) as log:
        await log.append("order-1", [canonlog.event("placed", {"n": 1})])


async def test_the_clean_database_passes(database, tmp_path):
    result = await Cli(database.app.uri(), database.admin.uri())("db", "status", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["problems"] == []
    await start_writer(settings_for(database, tmp_path))


@pytest.mark.parametrize("drift", DRIFTS)
async def test_each_drift_is_named_and_stops_the_writer(database, tmp_path, drift):
    statements, named, undo, refusal = DRIFTS[drift]
    settings = settings_for(database, tmp_path)
    await start_writer(settings)  # the ledger exists and its writer has run cleanly
    admin = await asyncpg.connect(database.admin.uri())
    try:
        for statement in statements:
            await admin.execute(statement)
        result = await Cli(database.app.uri(), database.admin.uri())("db", "status")
        assert result.code == 3, result.stdout + result.stderr
        assert "integrity: PROBLEMS" in result.stdout
        assert named in result.stdout, result.stdout
        with pytest.raises(refusal):
            await start_writer(settings)
    finally:
        for statement in undo:  # roles are shared by every database of the server
            await admin.execute(statement)
        await admin.close()
