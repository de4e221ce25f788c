"""The database and the Python verifier compute identical hashes (hash spec v1)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canonlog.domain.canonical import INT_MAX, INT_MIN, canonical_json
from canonlog.domain.events import RecordedEvent
from canonlog.domain.hashing import event_hash_v1, request_digest_v1

HASH_SQL = (
    "SELECT canonlog.event_hash_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s::timestamptz, %s::timestamptz, %s, %s, %s)"
)
VECTORS = Path(__file__).parents[1] / "vectors" / "hash_v1.json"

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
names = text.filter(lambda s: 1 <= len(s) <= 256)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(text, json_values, max_size=6)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


#: An agent signature as the hash sees it: a key id and 64 bytes, both present or both absent.
signatures = st.none() | st.tuples(names, st.binary(min_size=64, max_size=64))


@st.composite
def events(draw: st.DrawFn) -> RecordedEvent:
    signed = draw(signatures)
    return RecordedEvent(
        ledger_id=draw(names),
        sequence=draw(st.integers(1, INT_MAX)),
        event_id=uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
        stream_id=draw(names),
        stream_version=draw(st.integers(1, INT_MAX)),
        event_type=draw(names),
        payload=canonical_json(draw(objects)),
        metadata=canonical_json(draw(objects)),
        task_id=draw(st.none() | names),
        execution_id=draw(st.none() | names),
        correlation_id=draw(st.none() | names),
        causation_id=draw(st.none() | names),
        agent_id=draw(st.none() | names),
        writer_id=draw(names),
        epoch=draw(st.integers(0, INT_MAX)),
        writer_time=draw(st.none() | moments),
        recorded_at=draw(moments),
        hash_version=1,
        prev_hash=draw(st.binary(min_size=32, max_size=32)),
        hash=b"",
        signing_key_id=None if signed is None else signed[0],
        signature=None if signed is None else signed[1],
    )


def sql_hash(conn: psycopg.Connection, e: RecordedEvent) -> bytes:
    row = conn.execute(HASH_SQL, (
        e.ledger_id, e.sequence, e.event_id, e.stream_id, e.stream_version, e.event_type,
        e.payload, e.metadata, e.task_id, e.execution_id, e.correlation_id, e.causation_id,
        e.agent_id, e.writer_id, e.epoch, e.writer_time, e.recorded_at, e.signing_key_id,
        e.signature, e.prev_hash,
    )).fetchone()
    assert row is not None
    return bytes(row[0])


@pytest.fixture
def sql(database):
    with psycopg.connect(database.app.uri(), autocommit=True) as conn:
        # Hashes must not depend on the session's time zone.
        conn.execute("SET TIME ZONE 'Pacific/Chatham'")
        yield conn


def test_sql_and_python_agree_on_generated_events(sql):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(events())
    def check(event: RecordedEvent) -> None:
        assert sql_hash(sql, event) == event_hash_v1(event)

    check()


def test_sql_and_python_agree_on_the_golden_vectors(sql):
    vectors = json.loads(VECTORS.read_text("utf-8"))
    cases = vectors["event_hash_v1"]
    assert len(cases) >= 6
    assert any(fields["signature"] is not None for fields in cases)
    for fields in cases:
        event = RecordedEvent(
            ledger_id=fields["ledger_id"], sequence=fields["sequence"],
            event_id=uuid.UUID(fields["event_id"]), stream_id=fields["stream_id"],
            stream_version=fields["stream_version"], event_type=fields["event_type"],
            payload=fields["payload"].encode(), metadata=fields["metadata"].encode(),
            task_id=fields["task_id"], execution_id=fields["execution_id"],
            correlation_id=fields["correlation_id"], causation_id=fields["causation_id"],
            agent_id=fields["agent_id"], writer_id=fields["writer_id"], epoch=fields["epoch"],
            writer_time=(None if fields["writer_time"] is None
                         else datetime.fromisoformat(fields["writer_time"])),
            recorded_at=datetime.fromisoformat(fields["recorded_at"]), hash_version=1,
            prev_hash=bytes.fromhex(fields["prev_hash"]), hash=b"",
            signing_key_id=fields["signing_key_id"],
            signature=(None if fields["signature"] is None
                       else bytes.fromhex(fields["signature"])),
        )
        assert sql_hash(sql, event).hex() == fields["hash"], fields["name"]


def test_microseconds_and_time_zones_do_not_change_a_hash(sql):
    base = datetime(2026, 11, 22, 0, 0, 0, 123456, tzinfo=UTC)
    shifted = base.astimezone(timezone(timedelta(hours=-7)))
    event = RecordedEvent("main", 1, uuid.UUID(int=1), "s", 1, "t", b"{}", b"{}", None, None,
                          None, None, None, "w", 1, shifted, base, 1, bytes(32), b"")
    assert sql_hash(sql, event) == event_hash_v1(event)


APPEND_SQL = (
    "SELECT * FROM canonlog.append_v2(%s, %s, %s, NULL, %s::text[], %s::bigint[], %s::bigint[],"
    " %s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::timestamptz[], %s::uuid[], %s::text[], %s::bytea[], %s::bytea[], %s::text[], %s::bytea[])"
)
AGENT_KEY = "agent-key"


@st.composite
def requests(draw: st.DrawFn) -> dict:
    """An append request as the function takes it, with an execution id of its own."""
    agent = draw(st.none() | st.just("agent-1"))
    count = draw(st.integers(1, 3))
    signed = [agent is not None and draw(st.booleans()) for _ in range(count)]
    return {
        "stream": draw(names.filter(lambda s: not s.startswith("$"))),
        "task": draw(st.none() | names), "correlation": draw(st.none() | names),
        "causation": draw(st.none() | names), "agent": agent,
        "writer_time": draw(st.none() | moments),
        "events": [
            (draw(names), canonical_json(draw(objects)), canonical_json(draw(objects)),
             uuid.uuid4() if sign or draw(st.booleans()) else None,
             draw(st.binary(min_size=64, max_size=64)) if sign else None)
            for sign in signed
        ],
    }


def test_the_append_function_hashes_and_digests_as_python_does(sql, database):
    # Keys are the operator's and the idempotency records the owner's.
    admin = psycopg.connect(database.admin.uri(), autocommit=True)
    epoch = sql.execute("SELECT canonlog.acquire_grant_v1('main', 'w')").fetchone()[0]
    admin.execute("SELECT canonlog.add_key_v2('main', %s, 'agent', 'agent-1', %s, 'ops')",
                  (AGENT_KEY, bytes(32)))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(requests(), min_size=1, max_size=3))
    def check(batch: list[dict]) -> None:
        executions = [uuid.uuid4().hex for _ in batch]
        events = [e for r in batch for e in r["events"]]
        row = sql.execute(APPEND_SQL, (
            "main", "w", epoch, [r["stream"] for r in batch], [None] * len(batch),
            [None] * len(batch), [len(r["events"]) for r in batch], [r["task"] for r in batch],
            executions, [r["correlation"] for r in batch], [r["causation"] for r in batch],
            [r["agent"] for r in batch], [r["writer_time"] for r in batch],
            [e[3] for e in events], [e[0] for e in events], [e[1] for e in events],
            [e[2] for e in events], [None if e[4] is None else AGENT_KEY for e in events],
            [e[4] for e in events],
        )).fetchone()
        assert row is not None and row[6] is None, row  # every request recorded
        stored = sql.execute(
            "SELECT * FROM canonlog.events WHERE ledger_id = 'main' AND seq >= %s ORDER BY seq",
            (row[0],)).fetchall()
        assert len(stored) == len(events)
        for values in stored:
            event = RecordedEvent(*values)
            assert event.hash == event_hash_v1(event)
        for request, execution in zip(batch, executions, strict=True):
            (digest,) = admin.execute(
                "SELECT request_digest FROM canonlog.executions WHERE execution_id = %s",
                (execution,)).fetchone()
            assert bytes(digest) == request_digest_v1(
                request["stream"], request["task"], request["correlation"],
                request["causation"], request["agent"], [e[:3] for e in request["events"]])

    with admin:
        check()
