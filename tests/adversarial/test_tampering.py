"""A superuser who edits history is caught by the verifier at the exact sequence.

Each test builds a ledger through the real append path, tampers with it as a
superuser (triggers disabled, which only a superuser can do) and checks that
verify_chain, from the database and from an export with no database, names the
first broken link.
"""

from __future__ import annotations

import io

import asyncpg
import pytest

from canonlog.application.chain_verification import verify_chain
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.export import export_ledger, verify_export
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.migrations import check_schema

EVENTS = 60


@pytest.fixture
async def ledger(database):
    log = await AsyncpgEventLog.connect(database.app.uri())
    grant = await log.acquire_grant("main", "writer-a")
    for i in range(EVENTS - 1):
        await log.append(grant, AppendRequest.create(
            f"account-{i % 4}", [NewEvent.create("deposited", {"amount": i, "memo": "ü"})]))
    admin = await asyncpg.connect(database.admin.uri())
    yield log, admin, database
    await admin.close()
    await log.close()


async def tamper(admin: asyncpg.Connection, statement: str) -> None:
    async with admin.transaction():
        await admin.execute("ALTER TABLE canonlog.events DISABLE TRIGGER USER")
        await admin.execute(statement)
        for trigger in ("events_guard_insert", "events_refuse_update", "events_refuse_delete",
                        "events_refuse_truncate"):
            await admin.execute(f"ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER {trigger}")


async def first_break_everywhere(log, tmp_path):
    from_db = await verify_chain(log, "main", page_size=7)
    path = tmp_path / "export.jsonl"
    with path.open("w", encoding="utf-8") as out:
        await export_ledger(log, "main", out)
    from_export = verify_export(path)
    assert from_db.breaks == from_export.breaks
    return from_db


async def test_an_untouched_ledger_verifies(ledger, tmp_path):
    log, _, _ = ledger
    report = await first_break_everywhere(log, tmp_path)
    assert report.ok, report.breaks
    assert report.events_checked == EVENTS
    assert report.head_hash == (await log.head("main")).hash


async def test_an_edited_payload_is_caught_at_its_sequence(ledger, tmp_path):
    log, admin, _ = ledger
    await tamper(admin, "UPDATE canonlog.events SET payload = convert_to('{\"amount\":1000000}',"
                        " 'UTF8') WHERE seq = 20")
    report = await first_break_everywhere(log, tmp_path)
    assert report.first_break.sequence == 20
    assert report.first_break.kind == "hash_mismatch"
    assert [b.sequence for b in report.breaks] == [20]


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(ledger, tmp_path):
    log, admin, _ = ledger
    await tamper(admin, """
        UPDATE canonlog.events SET payload = convert_to('{"amount":7}', 'UTF8'),
               hash = canonlog.event_hash_v1(ledger_id, seq, event_id, stream_id, stream_version,
                   event_type, convert_to('{"amount":7}', 'UTF8'), metadata, task_id,
                   execution_id, correlation_id, causation_id, agent_id, writer_id, epoch,
                   writer_time, recorded_at, signing_key_id, signature, prev_hash)
        WHERE seq = 33""")
    report = await first_break_everywhere(log, tmp_path)
    assert report.first_break.sequence == 34
    assert report.first_break.kind == "prev_hash_mismatch"


async def test_an_edited_hash_is_caught_at_its_sequence(ledger, tmp_path):
    log, admin, _ = ledger
    await tamper(admin, "UPDATE canonlog.events SET hash = sha256(hash) WHERE seq = 41")
    report = await first_break_everywhere(log, tmp_path)
    assert report.first_break.sequence == 41
    assert report.first_break.kind == "hash_mismatch"
    assert report.first_break.found == (await log.read_all("main", after=40, limit=1))[0].hash.hex()


async def test_a_deleted_row_is_caught_as_a_missing_sequence(ledger, tmp_path):
    log, admin, _ = ledger
    await tamper(admin, "DELETE FROM canonlog.events WHERE seq = 25")
    report = await first_break_everywhere(log, tmp_path)
    assert report.first_break.sequence == 25
    assert report.first_break.kind == "missing_sequence"
    assert "sequence 25 is missing" in report.first_break.message


async def test_a_changed_stream_version_is_caught(ledger, tmp_path):
    log, admin, _ = ledger
    await tamper(admin, "UPDATE canonlog.events SET stream_version = stream_version + 100"
                        " WHERE seq = 12")
    report = await first_break_everywhere(log, tmp_path)
    assert report.first_break.sequence == 12
    assert {b.kind for b in report.breaks if b.sequence == 12} >= {"hash_mismatch", "stream_version"}


async def test_the_schema_check_reports_disabled_and_modified_triggers(ledger):
    _, admin, _ = ledger
    assert (await check_schema(admin)).ok
    await admin.execute("ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_update")
    await admin.execute("ALTER TABLE canonlog.executions ENABLE TRIGGER executions_refuse_delete")
    await admin.execute("""CREATE OR REPLACE FUNCTION canonlog.refuse_change_v1() RETURNS trigger
        LANGUAGE plpgsql AS $body$ BEGIN RETURN OLD; END $body$""")
    await admin.execute("DROP TRIGGER events_refuse_truncate ON canonlog.events")
    report = await check_schema(admin)
    assert not report.ok
    assert set(report.problems) >= {  # the catalogue names each change once more
        "trigger events_refuse_update on canonlog.events is disabled, not ALWAYS",
        "trigger executions_refuse_delete on canonlog.executions is enabled only for origin"
        " sessions, not ALWAYS",
        "function canonlog.refuse_change_v1 differs from the shipped definition",
        "trigger events_refuse_truncate on canonlog.events is missing",
    }


async def test_an_export_read_back_with_a_broken_line_names_the_line(ledger, tmp_path):
    log, _, _ = ledger
    buffer = io.StringIO()
    await export_ledger(log, "main", buffer)
    lines = buffer.getvalue().splitlines()
    lines[3] = lines[3][:-5]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from canonlog.domain.errors import ExportFormatError

    with pytest.raises(ExportFormatError, match="line 4"):
        verify_export(path)
