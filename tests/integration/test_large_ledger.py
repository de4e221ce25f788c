"""A 100,000-event ledger verifies from the database and from an export, and a single
edited row in it is named exactly, by both."""

from __future__ import annotations

import asyncpg

from canonlog.application.chain_verification import verify_chain
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.export import export_ledger, verify_export
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

EVENTS = 100_000
PER_REQUEST = 100
REQUESTS_PER_BATCH = 10


async def test_a_100k_event_ledger_verifies_and_one_edit_is_named(database, tmp_path):
    log = await AsyncpgEventLog.connect(database.app.uri())
    try:
        grant = await log.acquire_grant("main", "writer-a")
        template = [NewEvent.create("reading", {"sensor": "s-1", "value": 21.5, "unit": "C"})]
        for batch in range(EVENTS // (PER_REQUEST * REQUESTS_PER_BATCH)):
            requests = [AppendRequest.create(f"sensor-{(batch * REQUESTS_PER_BATCH + r) % 97}",
                                             template * PER_REQUEST)
                        for r in range(REQUESTS_PER_BATCH)]
            await log.append_batch(grant, requests)
        total = EVENTS + 1
        progress: list[int] = []
        report = await verify_chain(log, "main", progress=progress.append)
        assert report.ok, report.breaks[:3]
        assert report.events_checked == total
        assert progress[-1] == total
        path = tmp_path / "ledger.jsonl"
        with path.open("w", encoding="utf-8") as out:
            assert await export_ledger(log, "main", out) == total
        from_export = verify_export(path)
        assert from_export.ok and from_export.head_hash == report.head_hash

        admin = await asyncpg.connect(database.admin.uri())
        try:
            async with admin.transaction():
                await admin.execute(
                    "ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_update")
                await admin.execute("UPDATE canonlog.events SET payload = convert_to("
                                    "'{\"sensor\":\"s-1\",\"unit\":\"C\",\"value\":99.5}', 'UTF8')"
                                    " WHERE seq = 73421")
                await admin.execute(
                    "ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_update")
        finally:
            await admin.close()
        broken = await verify_chain(log, "main")
        assert [(b.sequence, b.kind) for b in broken.breaks] == [(73421, "hash_mismatch")]
        with path.open("w", encoding="utf-8") as out:
            await export_ledger(log, "main", out)
        assert verify_export(path).breaks == broken.breaks
    finally:
        await log.close()
