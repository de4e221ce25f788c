"""What the in-memory adapter adds to the contract suite: its clock, its governance
payloads, its refusals, and that nothing it returns can change what it holds."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from canonlog.application.ports import AppendResult, append_one
from canonlog.domain.canonical import canonical_json
from canonlog.domain.ceremony import resume_statement_v1
from canonlog.domain.errors import (
    IdempotencyConflict,
    InvalidEvent,
    LedgerNotFound,
    StaleWriter,
    StorageError,
    SystemHalted,
)
from canonlog.domain.events import (
    AppendRequest,
    NewEvent,
)
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.memory.pgtext import canonical_jsonb, parse_jsonb
from tests.support.ceremony import RESUME_WITNESS_KEY, resume_by_ceremony
from tests.support.chains import assert_chain_verifies
from tests.support.keys import public_bytes
from tests.support.ledgers import request

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class SteppingClock:
    """A clock that returns the given readings in turn, then repeats the last."""

    def __init__(self, *readings: datetime) -> None:
        self.readings: Iterator[datetime] = iter(readings)
        self.last = readings[-1]

    def __call__(self) -> datetime:
        self.last = next(self.readings, self.last)
        return self.last


async def test_authority_time_holds_still_while_the_clock_runs_backwards() -> None:
    clock = SteppingClock(START, START + timedelta(seconds=5), START - timedelta(hours=1),
                          START + timedelta(seconds=2), START + timedelta(seconds=9))
    log = MemoryEventLog(clock=clock)
    grant = await log.acquire_grant("main", "writer-a")
    for _ in range(4):
        await append_one(log, grant, request("s"))
    events = await log.read_all("main")
    assert [e.recorded_at for e in events] == [
        START, START + timedelta(seconds=5), START + timedelta(seconds=5),
        START + timedelta(seconds=5), START + timedelta(seconds=9),
    ]
    assert_chain_verifies(events)


async def test_every_event_of_a_batch_gets_one_clock_reading() -> None:
    clock = SteppingClock(START, START + timedelta(seconds=1), START + timedelta(seconds=2))
    log = MemoryEventLog(clock=clock)
    grant = await log.acquire_grant("main", "writer-a")
    outcomes = await log.append_batch(grant, [request("a", {"i": 1}, {"i": 2}), request("b")])
    times = {e.recorded_at for o in outcomes if isinstance(o, AppendResult) for e in o.events}
    assert times == {START + timedelta(seconds=1)}


async def test_recorded_at_is_utc_whatever_the_clock_zone() -> None:
    zone = datetime.now().astimezone().tzinfo
    log = MemoryEventLog(clock=lambda: START.astimezone(zone))
    await log.acquire_grant("main", "writer-a")
    (event,) = await log.read_all("main")
    assert event.recorded_at == START and event.recorded_at.tzinfo is UTC


async def test_governance_payloads_are_canonical_json() -> None:
    """System payloads are canonical JSON v1, the bytes append_system_v1 stores, the
    resume ceremony's included."""
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    grant = await log.acquire_grant("main", "writer-a")
    reason = 'r\u00e9ason "q"\n\x7f\u2028'
    await log.halt("main", reason, "ops")
    await resume_by_ceremony(log)
    await log.release_grant(grant)
    await log.acquire_grant("main", "writer-b")
    events = await log.read_stream("main", "$ledger")
    halt = events[2]
    halt_hash = halt.hash.hex().encode()
    signature = RESUME_WITNESS_KEY.sign(resume_statement_v1(
        ledger_id="main", halt_sequence=halt.sequence, halt_hash=halt.hash)).hex().encode()
    public_key = public_bytes(RESUME_WITNESS_KEY).hex().encode()
    quoted_reason = b'"r\xc3\xa9ason \\"q\\"\\n\x7f\xe2\x80\xa8"'
    payloads = [e.payload for e in events]
    assert payloads == [
        b'{"epoch":1,"kind":"genesis","previous_epoch":0,"previous_writer_id":null,'
        b'"writer_id":"writer-a"}',
        b'{"epoch":2,"kind":"restart","previous_epoch":1,"previous_writer_id":"writer-a",'
        b'"writer_id":"writer-a"}',
        b'{"actor":"ops","reason":' + quoted_reason + b'}',
        b'{"actor":"ops","kind":"adoption","policy":{"proposers":["canonlog_operator"],'
        b'"resume_wait_seconds":0,"thresholds":{"failover":1,"policy":1,"resume":1},'
        b'"witnesses":[{"key_id":"w-resume","owner_id":"resume-witness","public_key":"'
        + public_key + b'"}]}}',
        b'{"actor":"ops","epoch":2,"halt_hash":"' + halt_hash + b'","halt_sequence":3,'
        b'"kind":"resume","proposal_id":1,"writer_id":"writer-a"}',
        b'{"actor":"ops","key_id":"w-resume","kind":"resume","owner_id":"resume-witness",'
        b'"proposal_id":1,"signature":"' + signature + b'"}',
        b'{"actor":"ops","evidence":{"approvals":[{"key_id":"w-resume",'
        b'"owner_id":"resume-witness","signature":"' + signature + b'"}],"halt_hash":"'
        + halt_hash + b'","halt_sequence":3,"min_wait_seconds":0,"policy_sequence":4,'
        b'"proposal_id":1,"statement":"canonlog/ceremony/resume/v1","threshold":1},'
        b'"halt_reason":'
        + quoted_reason + b'}',
        b'{"epoch":2,"writer_id":"writer-a"}',
        b'{"epoch":3,"kind":"hand-over","previous_epoch":2,"previous_writer_id":null,'
        b'"writer_id":"writer-b"}',
    ]
    assert all(canonical_json(p) == p for p in payloads)
    assert all(e.metadata == b"{}" for e in await log.read_all("main"))


@pytest.mark.parametrize(("text", "rendered"), [
    (r'{"ab": 1, "z": 2, "é": 3, "aa": 4, "\ud83d\ude00": 5, "\uffff": 6}',
     '{"aa":4,"ab":1,"z":2,"é":3,"\uffff":6,"\U0001f600":5}'),
    ('{"a": [], "b": {}, "c": [{}, []]}', '{"a":[],"b":{},"c":[{},[]]}'),
    ('{"a": 1, "a": 2}', '{"a":2}'),
    ('{"n": [1.50, 1.5E+3, -0.0, -0, 2.5e-05]}', '{"n":[1.50,1500,0.0,0,0.000025]}'),
    ('{"n": 123456789012345678901234567890}', '{"n":123456789012345678901234567890}'),
    (r'{"s": "tab\t quote\" back\\ bell\u0007 del\u007f \u2028 \/"}',
     '{"s":"tab\\t quote\\" back\\\\ bell\\u0007 del\x7f \u2028 /"}'),
])
def test_canonical_jsonb_renders_like_canonical_json_v1(text: str, rendered: str) -> None:
    assert canonical_jsonb(parse_jsonb(text, "payload")) == rendered


@pytest.mark.parametrize("payload", [
    b"[1]", b"null", b"not json", b"\xff\xfe", b'\xef\xbb\xbf{}', b'{"a":"\\u0000"}',
    b'{"a":"\\ud800"}', b'{"a":NaN}', b'{"a":Infinity}', b"{\"a\":1}\x00", b"",
])
async def test_payloads_jsonb_would_refuse_fail_the_whole_batch(payload: bytes) -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    head = await log.head("main")
    with pytest.raises(InvalidEvent, match="event 2 of the batch"):
        await log.append_batch(grant, [request("fine"),
                                       AppendRequest("s", (NewEvent("x", payload),))])
    with pytest.raises(InvalidEvent, match="event 1 of the batch"):
        await append_one(log, grant, AppendRequest("s", (NewEvent("x", b"{}", payload),)))
    assert await log.head("main") == head


@pytest.mark.parametrize(("payload", "problem"), [
    (b'{"a":1,"a":2}', 'payload has the key "a" twice in one object'),
    (b'{"n":1e400}', "payload contains the number 1e400, which is out of range for a double"),
    (b'{"m":123456789012345678901234567890}',
     "payload contains the integer 123456789012345678901234567890, outside the signed 64-bit range"),
    (b' {"n": 1} ', "payload is not in canonical form (canonical JSON v1)"),
])
async def test_payloads_jsonb_accepts_but_canonical_json_refuses_are_refused(
        payload: bytes, problem: str) -> None:
    """jsonb would keep the last of duplicate keys and read big numbers exactly; the
    database refuses them as canonical JSON v1 does, and so does the memory log."""
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    head = await log.head("main")
    with pytest.raises(InvalidEvent) as caught:
        await append_one(log, grant, AppendRequest("s", (NewEvent("x", payload),)))
    assert str(caught.value) == f"event 1 of the batch: {problem}"
    assert await log.head("main") == head


async def test_text_postgresql_cannot_store_fails_the_whole_batch() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    for bad in (AppendRequest("s\x00", (NewEvent("x", b"{}"),)),
                AppendRequest("s", (NewEvent("x\ud800", b"{}"),))):
        with pytest.raises(InvalidEvent, match="the database refused the input"):
            await log.append_batch(grant, [request("fine"), bad])
    with pytest.raises(InvalidEvent):
        await log.acquire_grant("main", "writer\x00")
    assert (await log.head("main")).sequence == 1


async def test_a_refused_batch_leaves_no_idempotency_record() -> None:
    log = MemoryEventLog()
    stale = await log.acquire_grant("main", "writer-a")
    grant = await log.acquire_grant("main", "writer-a")
    with pytest.raises(StaleWriter):
        await append_one(log, stale, request("s", {"a": 1}, execution_id="x-1"))
    result = await append_one(log, grant, request("s", {"a": 2}, execution_id="x-1"))
    assert not result.replayed
    with pytest.raises(IdempotencyConflict):
        await append_one(log, grant, request("s", {"a": 1}, execution_id="x-1"))


async def test_a_replay_returns_the_stored_events_even_after_later_appends() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    original = await append_one(log, grant, request("s", {"a": 1}, {"a": 2}, execution_id="x-1"))
    await append_one(log, grant, request("s"))
    retry = await append_one(log, grant, request("s", {"a": 1}, {"a": 2}, execution_id="x-1"))
    assert retry.replayed and retry.events == original.events
    assert list(retry.events) == (await log.read_all("main"))[1:3]


async def test_concurrent_appenders_get_a_gap_free_verifiable_chain() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")

    async def appender(index: int) -> list[int]:
        sequences = []
        for n in range(25):
            result = await append_one(log, grant, request(f"s-{index % 3}", {"i": index, "n": n}))
            sequences += [e.sequence for e in result.events]
            await asyncio.sleep(0)
        return sequences

    results = await asyncio.gather(*(appender(i) for i in range(8)))
    assert sorted(s for r in results for s in r) == list(range(2, 202))
    events = await log.read_all("main")
    assert_chain_verifies(events)
    for stream in ("s-0", "s-1", "s-2"):
        versions = [e.stream_version for e in await log.read_stream("main", stream)]
        assert versions == list(range(1, len(versions) + 1))


async def test_event_ids_are_random_uuid4_unless_supplied_and_unique_across_ledgers() -> None:
    log = MemoryEventLog()
    a = await log.acquire_grant("alpha", "writer-a")
    b = await log.acquire_grant("beta", "writer-b")
    (generated,) = (await append_one(log, a, request("s"))).events
    assert generated.event_id.version == 4
    supplied = uuid.uuid4()
    event = NewEvent.create("x", {}, event_id=supplied)
    (kept,) = (await append_one(log, a, AppendRequest.create("s", [event]))).events
    assert kept.event_id == supplied
    with pytest.raises(InvalidEvent, match=f"event id {supplied} is already recorded"):
        await append_one(log, b, AppendRequest.create("s", [event]))


async def test_a_halt_refusal_carries_the_reason_for_grants_too() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    await log.halt("main", "disk audit", "ops")
    for attempt in (log.acquire_grant("main", "writer-a"), log.release_grant(grant),
                    append_one(log, grant, request("s"))):
        with pytest.raises(SystemHalted, match="ledger main is halted: disk audit") as halted:
            await attempt
        assert halted.value.reason == "disk audit"


async def test_what_reads_return_cannot_change_the_ledger() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    await append_one(log, grant, request("s"))
    events = await log.read_all("main")
    stream = await log.read_stream("main", "s")
    events.clear()
    stream.append(stream[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream[0].payload = b'{"forged":true}'  # type: ignore[misc]
    assert len(await log.read_all("main")) == 2
    assert len(await log.read_stream("main", "s")) == 1


async def test_reads_page_and_clamp_like_sql() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    await append_one(log, grant, request("s", *({"i": i} for i in range(4))))
    assert [e.sequence for e in await log.read_all("main", after=-5, limit=2)] == [1, 2]
    assert await log.read_all("main", after=99) == []
    assert [e.stream_version for e in await log.read_stream("main", "s", from_version=0)] == [
        1, 2, 3, 4]
    assert await log.read_stream("main", "s", limit=0) == []
    with pytest.raises(StorageError, match="LIMIT must not be negative"):
        await log.read_all("main", limit=-1)


async def test_a_closed_log_refuses_every_call() -> None:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "writer-a")
    await log.close()
    with pytest.raises(StorageError):
        await append_one(log, grant, request("s"))
    with pytest.raises(StorageError):
        await log.read_all("main")


async def test_a_naive_clock_is_refused() -> None:
    log = MemoryEventLog(clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await log.acquire_grant("main", "writer-a")
    with pytest.raises(LedgerNotFound):
        await log.ledger_state("main")
