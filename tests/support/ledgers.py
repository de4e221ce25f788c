"""Building ledgers through the real append path, and tampering with them as a superuser."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from canonlog.application.ports import append_one
from canonlog.domain.events import (
    AppendRequest,
    ExpectedVersion,
    Head,
    NewEvent,
    StreamState,
    WriteContext,
)
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.support.servers import PgTarget

#: Recomputes prev_hash and hash of every event of ledger 'main' in sequence order with
#: the database's own hash function: a chain rewritten this way verifies on its own.
REWRITE_CHAIN = """
DO $rewrite$
DECLARE
    r record;
    v_prev bytea := '\\x' || repeat('00', 32);
    v_hash bytea;
BEGIN
    FOR r IN SELECT * FROM canonlog.events WHERE ledger_id = 'main' ORDER BY seq LOOP
        v_hash := canonlog.event_hash_v1(
            r.ledger_id, r.seq, r.event_id, r.stream_id, r.stream_version, r.event_type,
            r.payload, r.metadata, r.task_id, r.execution_id, r.correlation_id,
            r.causation_id, r.agent_id, r.writer_id, r.epoch, r.writer_time,
            r.recorded_at, r.signing_key_id, r.signature, v_prev);
        UPDATE canonlog.events SET prev_hash = v_prev, hash = v_hash
        WHERE ledger_id = r.ledger_id AND seq = r.seq;
        v_prev := v_hash;
    END LOOP;
END
$rewrite$"""

#: Doubles every deposit of ledger 'main' (the payload bytes, which the hash covers).
EDIT_PAYLOADS = """
UPDATE canonlog.events
SET payload = convert_to(replace(convert_from(payload, 'UTF8'), '"amount":', '"amount":1'), 'UTF8')
WHERE ledger_id = 'main' AND event_type = 'deposited'"""


def request(stream: str, *payloads: dict[str, Any], expected: ExpectedVersion = StreamState.ANY,
            **context: Any) -> AppendRequest:
    """One request of "thing_happened" events with these payloads ({"n": 1} when none)."""
    events = [NewEvent.create("thing_happened", p) for p in payloads or ({"n": 1},)]
    return AppendRequest.create(stream, events, expected_version=expected,
                                context=WriteContext(**context))


async def append_events(uri: str, count: int, *, ledger: str = "main",
                        writer_id: str = "writer-a") -> Head:
    """Appends count deposits between a grant and its release (count + 2 events); returns the head."""
    log = await AsyncpgEventLog.connect(uri, max_size=2)
    try:
        grant = await log.acquire_grant(ledger, writer_id)
        for i in range(count):
            await append_one(log, grant, AppendRequest.create(
                f"account-{i % 3}", [NewEvent.create("deposited", {"amount": i + 1})]))
        await log.release_grant(grant)
        return await log.head(ledger)
    finally:
        await log.close()


async def as_superuser(admin_uri: str, *statements: str) -> None:
    """Runs statements with every integrity trigger on canonlog.events disabled, as only a
    superuser can, then puts each trigger back exactly as it was."""
    conn = await asyncpg.connect(admin_uri)
    try:
        async with conn.transaction():
            triggers = await conn.fetch(
                "SELECT tgname, tgenabled::text AS tgenabled FROM pg_trigger "
                "WHERE tgrelid = 'canonlog.events'::regclass AND NOT tgisinternal")
            await conn.execute("ALTER TABLE canonlog.events DISABLE TRIGGER USER")
            for statement in statements:
                await conn.execute(statement)
            modes = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}
            for trigger in triggers:
                if trigger["tgenabled"] in modes:
                    await conn.execute(f'ALTER TABLE canonlog.events {modes[trigger["tgenabled"]]} '
                                       f'TRIGGER "{trigger["tgname"]}"')
            restored = await conn.fetch(
                "SELECT tgname, tgenabled::text AS tgenabled FROM pg_trigger "
                "WHERE tgrelid = 'canonlog.events'::regclass AND NOT tgisinternal")
            assert sorted(map(tuple, restored)) == sorted(map(tuple, triggers))
    finally:
        await conn.close()


async def copy_database(admin: PgTarget, source: PgTarget) -> PgTarget:
    """An exact copy of source, as a restored backup would be (no one may be connected to it)."""
    name = f"canonlog_copy_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin.uri())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"')
    finally:
        await conn.close()
    return source.on(name)
