"""The in-memory adapter and PostgreSQL, given the same script, record the same ledger,
and the payloads the database writes itself are canonical JSON v1."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from canonlog.application.chain_verification import verify_events
from canonlog.application.ports import AppendOutcome, AppendResult, EventLog, append_one
from canonlog.domain.canonical import canonical_json
from canonlog.domain.ceremony import resume_statement_v1
from canonlog.domain.errors import CanonlogError, InvalidEvent
from canonlog.domain.events import (
    AppendRequest,
    NewEvent,
    RecordedEvent,
    StreamState,
    WriteContext,
)
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.memory.pgtext import canonical_jsonb, parse_jsonb
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.conftest import TestDatabase
from tests.support.ceremony import (
    RESUME_WITNESS_KEY,
    RESUME_WITNESS_KEY_ID,
    RESUME_WITNESS_OWNER,
    TEST_POLICY,
    resume_by_ceremony,
)
from tests.support.chains import assert_chain_verifies, run_side_by_side
from tests.support.roles import by_role

#: Fields that depend on the clock or on random ids, and the hashes that cover them.
VOLATILE = {"event_id", "recorded_at", "hash", "prev_hash"}
SUPPLIED_ID = uuid.UUID("5f0c1c2e-8d1b-4c39-9a57-3b0f6f1d2a11")
WRITER_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
#: Payload members that quote a chain hash or sign one: they cover the clock too.
CLOCKED_MEMBERS = re.compile(r'"(halt_hash|signature)":"[0-9a-f]+"')


def req(stream: str, *payloads: dict[str, Any], expected: Any = StreamState.ANY,
        event_id: uuid.UUID | None = None, **context: Any) -> AppendRequest:
    events = [NewEvent.create("thing_happened", p, {"trace": stream}, event_id=event_id)
              for p in payloads or ({"n": 1},)]
    return AppendRequest.create(stream, events, expected_version=expected,
                                context=WriteContext(**context))


def summary(outcome: AppendOutcome | BaseException | object) -> object:
    """An outcome without what depends on time or random ids."""
    if isinstance(outcome, AppendResult):
        return ("replayed" if outcome.replayed else "ok",
                [(e.sequence, e.stream_id, e.stream_version, e.writer_id, e.epoch)
                 for e in outcome.events])
    if isinstance(outcome, CanonlogError):
        return (type(outcome).__name__, str(outcome), getattr(outcome, "actual", None))
    return outcome


async def attempt(step: Any) -> object:
    try:
        return summary(await step)
    except CanonlogError as exc:
        return summary(exc)


async def run_script(log: EventLog) -> list[object]:
    """Grants, appends with conflicts and replays, halt, resume by ceremony, release,
    hand-over."""
    results: list[object] = []
    grant = await log.acquire_grant("main", "writer-a")
    results.append(grant)
    grant = await log.acquire_grant("main", "writer-a")
    results.append(grant)
    results.append(await attempt(log.acquire_grant("main", "writer-b")))
    outcomes = await log.append_batch(grant, [
        req("order-1", {"a": 1}, expected=StreamState.NO_STREAM, execution_id="x-1"),
        req("order-1", expected=StreamState.NO_STREAM),
        req("order-2", {"b": 1}, {"b": 2}, execution_id="x-2", task_id="t-1", agent_id="ag"),
        req("order-1", {"a": 1}, expected=StreamState.NO_STREAM, execution_id="x-1"),
        req("order-1", {"a": 9}, execution_id="x-1"),
        AppendRequest("$ledger", (NewEvent.create("x", {}),)),
        req("order-3", {"c": "é"}, event_id=SUPPLIED_ID, correlation_id="c-1",
            causation_id="cause-1", writer_time=WRITER_TIME),
        req("order-4", expected=StreamState.STREAM_EXISTS),
        req("order-1", {"a": 2}, expected=1),
    ])
    results.append([summary(o) for o in outcomes])
    results.append(await attempt(append_one(log, grant, req(
        "order-2", {"b": 1}, {"b": 2}, execution_id="x-2", task_id="t-1", agent_id="ag",
        expected=7))))
    results.append(await attempt(append_one(log, grant, req("order-9", event_id=SUPPLIED_ID))))
    results.append(await attempt(append_one(log, grant, req("order-1", expected=5))))
    results.append(await log.halt("main", 'suspected tampering — "seq 7"\n', "ops"))
    results.append(await log.halt("main", "again", "ops"))
    results.append(await attempt(append_one(log, grant, req("order-1"))))
    results.append(await attempt(log.acquire_grant("main", "writer-a")))
    results.append(await attempt(log.release_grant(grant)))
    results.append(await log.ledger_state("main"))
    results.append(await resume_by_ceremony(log))
    results.append(await attempt(log.propose_resume("main", "ops")))
    results.append(await attempt(append_one(log, grant, req("order-1", {"a": 3}, expected=2))))
    await log.release_grant(grant)
    results.append(await attempt(append_one(log, grant, req("order-1"))))
    results.append(await log.ledger_state("main"))
    other = await log.acquire_grant("main", "writer-b")
    results.append(other)
    results.append(await attempt(append_one(log, other, req("order-1", {"a": 4}, expected=3))))
    results.append((await log.head("main")).sequence)
    return results


def stable(event: RecordedEvent) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(event).items() if k not in VOLATILE}


def unclocked(event: RecordedEvent) -> dict[str, Any]:
    """stable(event) with the hashes and signatures its payload quotes masked."""
    fields = stable(event)
    fields["payload"] = CLOCKED_MEMBERS.sub(r'"\1":"<clocked>"', event.payload.decode())
    return fields


async def test_memory_and_postgres_record_the_same_ledger(database: TestDatabase) -> None:
    memory, postgres = await run_side_by_side(database, run_script)
    assert memory.results == postgres.results
    assert len(memory.events) == len(postgres.events) > 10
    for mine, theirs in zip(memory.events, postgres.events, strict=True):
        assert unclocked(mine) == unclocked(theirs), f"event {theirs.sequence} differs"
    for run in (memory, postgres):
        assert_chain_verifies(run.events)
        assert [e for e in run.events if e.event_type == "canonlog.resumed"]
        assert verify_events(run.events, "main").ok
    supplied = [e for e in postgres.events if e.event_id == SUPPLIED_ID]
    assert [e.sequence for e in supplied] == [e.sequence for e in memory.events
                                              if e.event_id == SUPPLIED_ID]


# -- Governance payloads: canonical JSON v1, computed by canonlog.canonical_json_v1 -----

#: Objects whose canonical JSON the server and canonlog.domain.canonical must agree on.
TRICKY_OBJECTS: dict[str, dict[str, Any]] = {
    # U+FFFF sorts before U+1F600 by code point, after it by UTF-16 unit (a surrogate
    # pair starts at 0xD83D); jsonb's own order is by byte length first.
    "key-order": {"\U0001f600": 1, "\uffff": 2, "é": 3, "z": 4, "aa": 5, "ab": 6, "b": 7,
                  "": 8, "A": 9, "\u00e4": 10, "a\u0308": 11},
    "escapes": {"s": 'quote" backslash\\ slash/ \b\f\n\r\t', "c": "\x01\x0b\x1f",
                "del": "\x7f", "separators": "\u2028\u2029", "bom": "\ufeff",
                "emoji": "🙂👍🏽", "tab\tkey\"\\": "escaped key"},
    "nested": {"a": [[], {}, [[1, [2, [3]]]], {"z": {"y": {"x": []}}}],
               "o": {"b": [{"d": None, "c": True}], "a": {}}},
    "empty": {"object": {}, "array": [], "string": "", "in-array": [{}, [], ""]},
    "integers": {"zero": 0, "neg": -1, "ten": 10, "max": 2**63 - 1, "min": -(2**63),
                 "list": [1, -42, 9007199254740993]},
    "literals": {"t": True, "f": False, "n": None, "all": [True, False, None]},
    "nothing": {},
}


@pytest.fixture
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """The runtime roles may not call canonical_json_v1 directly; the admin may."""
    conn = await asyncpg.connect(database.admin.uri())
    try:
        yield conn
    finally:
        await conn.close()


async def server_canonical(conn: asyncpg.Connection, json_text: str) -> str:
    result = await conn.fetchval("SELECT canonlog.canonical_json_v1($1::text::jsonb)", json_text)
    assert isinstance(result, str)
    return result


@pytest.mark.parametrize("name", TRICKY_OBJECTS)
async def test_the_server_writes_canonical_json_as_python_does(
    admin: asyncpg.Connection, name: str
) -> None:
    """canonlog.canonical_json_v1(x::jsonb) is canonical_json(x), however x is written."""
    value = TRICKY_OBJECTS[name]
    expected = canonical_json(value).decode("utf-8")
    assert await server_canonical(admin, json.dumps(value)) == expected
    assert await server_canonical(admin, json.dumps(value, ensure_ascii=False, indent=1)) == expected


async def test_floats_are_where_the_server_and_canonical_json_differ(
    admin: asyncpg.Connection,
) -> None:
    """Not every number: canonical_json_v1 keeps jsonb's rendering of numbers, which is
    canonical JSON v1 for integers but not for floats (1e20 is 1e+20 in canonical JSON
    and a 21-digit integer in jsonb). The database writes governance payloads only, and
    none of them holds a float: even resume evidence is the ceremony's, not the
    operator's."""
    assert canonical_json({"x": 1e20}) == b'{"x":1e+20}'
    assert await server_canonical(admin, '{"x": 1e20}') == '{"x":100000000000000000000}'
    assert await server_canonical(admin, '{"x": 1.0}') == canonical_json({"x": 1.0}).decode()


def expected_governance_payloads(reason: str, halt: RecordedEvent) -> list[dict[str, Any]]:
    """The payloads of a grant, a halt for reason, its resume ceremony (with the test
    witness of tests.support.ceremony), a release and a hand-over."""
    signature = RESUME_WITNESS_KEY.sign(resume_statement_v1(
        ledger_id="main", halt_sequence=halt.sequence, halt_hash=halt.hash)).hex()
    approvals = [{"key_id": RESUME_WITNESS_KEY_ID, "owner_id": RESUME_WITNESS_OWNER,
                  "signature": signature}]
    return [
        {"writer_id": "writer-a", "epoch": 1, "kind": "genesis",
         "previous_writer_id": None, "previous_epoch": 0},
        {"reason": reason, "actor": "ops"},
        {"kind": "adoption", "policy": TEST_POLICY.document(), "actor": "ops"},
        {"proposal_id": 1, "kind": "resume", "writer_id": "writer-a", "epoch": 1,
         "halt_sequence": halt.sequence, "halt_hash": halt.hash.hex(), "actor": "ops"},
        {"proposal_id": 1, "kind": "resume", "key_id": RESUME_WITNESS_KEY_ID,
         "owner_id": RESUME_WITNESS_OWNER, "signature": signature, "actor": "ops"},
        {"actor": "ops", "halt_reason": reason, "evidence": {
            "proposal_id": 1, "halt_sequence": halt.sequence, "halt_hash": halt.hash.hex(),
            "approvals": approvals, "threshold": 1, "min_wait_seconds": 0,
            "policy_sequence": halt.sequence + 1, "statement": "canonlog/ceremony/resume/v1"}},
        {"writer_id": "writer-a", "epoch": 1},
        {"writer_id": "writer-b", "epoch": 2, "kind": "hand-over",
         "previous_writer_id": None, "previous_epoch": 1},
    ]


async def test_governance_payloads_are_canonical_json(database: TestDatabase) -> None:
    """What PostgreSQL stores for grants, halts, the resume ceremony and releases, byte
    for byte, is the canonical JSON of the payload object; the in-memory adapter stores
    the same."""
    reason = 'suspected tampering — "seq 7"\n\x01\x7f\u2028'
    memory = MemoryEventLog()
    postgres = await by_role(AsyncpgEventLog, database)
    try:
        for log in (memory, postgres):
            grant = await log.acquire_grant("main", "writer-a")
            await log.halt("main", reason, "ops")
            await resume_by_ceremony(log)
            await log.release_grant(grant)
            await log.acquire_grant("main", "writer-b")
            events = await log.read_stream("main", "$ledger")
            stored = [e.payload for e in events]
            expected = expected_governance_payloads(reason, events[1])
            assert stored == [canonical_json(payload) for payload in expected]
        assert stored[0] == (b'{"epoch":1,"kind":"genesis","previous_epoch":0,'
                             b'"previous_writer_id":null,"writer_id":"writer-a"}')
    finally:
        await postgres.close()
        await memory.close()


# -- The in-memory adapter's jsonb: what it accepts and how it renders it -------------

JSON_TEXTS = [
    '{"ab": 1, "z": 2, "é": 3, "aa": 4, "": 5, "ä": 6, "b": 7, "\\uffff": 8, "\\ud83d\\ude00": 9}',
    '{"a": 1, "a": 2}',
    '{"n": [1.50, 1.5e3, 1e-7, -0, -0.0, 0.000, 1E+2, 12.30e-1, 123456789012345678901234567890]}',
    '{"s": "tab\\t quote\\" back\\\\ \\u0007 \\u007f \\u2028 \\ud83d\\ude00 \\/ é"}',
    '{"deep": {"x": [[], {}, [{"b": null, "a": true}]], "y": false}}',
    ' { "spaced" : [ 1 , 2 ] } ',
]
REFUSED_TEXTS = [
    '{"a": "\\u0000"}', '{"a": "\\ud800"}', '{"a": NaN}', '{"a": Infinity}', "{'a': 1}",
    '\ufeff{"a": 1}', '{"a": 1} x', '{"a": 01}', '{"a": .5}', '{"a": "\x01"}', "",
]


@pytest.mark.parametrize("text", JSON_TEXTS)
async def test_memory_renders_jsonb_as_canonical_json_v1_does(
    admin: asyncpg.Connection, text: str
) -> None:
    """Floats included: the memory adapter mirrors the server, not canonical_json."""
    assert canonical_jsonb(parse_jsonb(text, "payload")) == await server_canonical(admin, text)


@pytest.mark.parametrize("text", REFUSED_TEXTS)
async def test_jsonb_refuses_what_postgresql_refuses(database: TestDatabase, text: str) -> None:
    conn = await asyncpg.connect(database.app.uri())
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetchval("SELECT convert_from($1, 'UTF8')::jsonb::text", text.encode())
    finally:
        await conn.close()
    with pytest.raises(InvalidEvent):
        parse_jsonb(text.encode(), "payload")
