"""Bad input is refused by name before anything is written, through the public API."""

from __future__ import annotations

import re

import asyncpg
import pytest

import canonlog

BAD_PAYLOADS = {
    "an array": (b"[1, 2]", "must be a JSON object"),
    "a string": ('"text"', "must be a JSON object"),
    "U+0000": ({"a": "x\x00y"}, "U+0000"),
    "an escaped U+0000": (b'{"a": "x\\u0000y"}', "U+0000"),
    "duplicate keys": (b'{"a": 1, "a": 2}', "twice"),
    "NaN": (b'{"a": NaN}', "NaN"),
    "a non-finite float": ({"a": float("inf")}, "not a finite number"),
    "a number out of double range": (b'{"a": 1e400}', "out of range"),
    "an integer beyond 64 bits": ({"a": 2**64}, "signed 64-bit"),
    "invalid UTF-8": (b'{"a": "\xff"}', "not valid UTF-8"),
    "a lone surrogate": ({"a": "\ud800"}, "lone surrogate"),
    "over the size limit": ({"a": "x" * 5000}, "the limit is 4096"),
}
BAD_NAMES = {
    "an empty stream id": ("", "placed", "stream_id must not be empty"),
    "an overlong stream id": ("s" * 257, "placed", "stream_id is 257 characters"),
    "a control character": ("order\n1", "placed", "control"),
    "an empty event type": ("order-1", "", "event_type must not be empty"),
    "an overlong event type": ("order-1", "t" * 300, "event_type is 300 characters"),
}


@pytest.fixture
async def ledger(database, tmp_path):
    settings = canonlog.Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                                 data_dir=tmp_path, max_payload_bytes=4096)
    async with canonlog.open(settings) as log:
        await log.append("order-1", [canonlog.event("placed", {"n": 1})])
        yield log, database


async def nothing_changed(log, database, head) -> None:
    assert await log.head() == head
    conn = await asyncpg.connect(database.admin.uri())
    try:
        assert await conn.fetchval("SELECT count(*) FROM canonlog.executions") == 0
        assert await conn.fetchval("SELECT max(seq) FROM canonlog.events") == head.sequence
    finally:
        await conn.close()


@pytest.mark.parametrize(("payload", "message"), BAD_PAYLOADS.values(), ids=BAD_PAYLOADS)
async def test_bad_payloads_are_refused_and_leave_nothing_behind(ledger, payload, message):
    log, database = ledger
    head = await log.head()
    with pytest.raises(canonlog.InvalidEvent, match=re.escape(message)):
        await log.append("order-1", [canonlog.event("placed", payload)], execution_id="x-1")
    await nothing_changed(log, database, head)
    # The execution id is still free: no idempotency record was left behind.
    result = await log.append("order-1", [canonlog.event("placed", {"ok": True})],
                              execution_id="x-1")
    assert not result.replayed and result.events[0].sequence == head.sequence + 1


@pytest.mark.parametrize(("stream", "event_type", "message"), BAD_NAMES.values(), ids=BAD_NAMES)
async def test_bad_names_are_refused_and_leave_nothing_behind(ledger, stream, event_type,
                                                              message):
    log, database = ledger
    head = await log.head()
    with pytest.raises(canonlog.InvalidEvent, match=re.escape(message)):
        await log.append(stream, [canonlog.event(event_type, {"n": 1})], execution_id="x-1")
    await nothing_changed(log, database, head)


async def test_a_bad_event_fails_its_whole_request(ledger):
    log, database = ledger
    head = await log.head()
    with pytest.raises(canonlog.InvalidEvent):
        await log.append("order-1", [canonlog.event("placed", {"n": 2}),
                                     canonlog.event("placed", b"[]")])
    await nothing_changed(log, database, head)
