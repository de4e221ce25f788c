"""Every destination against a real server: delivered events land once, keyed by
sequence, the digests match the chain's, and a server that is down is a
DestinationError, never a driver exception."""

from __future__ import annotations

import uuid

import pytest

from canonlog.domain.errors import DestinationError, InvalidConsumer
from canonlog.domain.relay import range_digest
from canonlog.infrastructure.destinations import DestinationOptions, open_destination
from tests.relay.conftest import LEDGER, SECRET


@pytest.fixture(params=["postgresql", "valkey", "jsonl"])
async def reconcilable(request, projection_dsn, redis_url, tmp_path):
    url = {"postgresql": projection_dsn,
           "valkey": f"{redis_url}?stream=test:{uuid.uuid4().hex}",
           "jsonl": f"file://{tmp_path}/events.jsonl"}[request.param]
    destination = await open_destination(url)
    yield destination
    await destination.close()


async def test_a_destination_holds_each_event_once_with_the_chains_hash(ledger, reconcilable):
    head = await ledger.append(30)
    events = await ledger.log.read_all(LEDGER)
    await reconcilable.deliver(events[:20])
    await reconcilable.deliver(events[10:])  # a redelivery overlapping what is there
    await reconcilable.deliver(events[10:])
    held = await reconcilable.entries(LEDGER, 1, head)
    assert held == {e.sequence: e.hash for e in events}
    expected = range_digest(5, 25, [(e.sequence, e.hash) for e in events[4:25]])
    assert await reconcilable.digest(LEDGER, 5, 25) == expected
    assert (await reconcilable.digest(LEDGER, 100, 200)).count == 0


async def test_the_projection_holds_the_payload_as_rows(ledger, projection_dsn):
    import asyncpg
    await ledger.append(3)
    destination = await open_destination(projection_dsn)
    try:
        await destination.deliver(await ledger.log.read_all(LEDGER))
    finally:
        await destination.close()
    conn = await asyncpg.connect(projection_dsn)
    try:
        rows = await conn.fetch("SELECT seq, event_type, payload->>'n' AS n FROM "
                                "canonlog_projection WHERE stream_id = 'orders' ORDER BY seq")
    finally:
        await conn.close()
    assert [(r["event_type"], r["n"]) for r in rows] == [("order.placed", str(i)) for i in range(3)]


async def test_a_stream_refuses_an_event_below_its_newest_id(ledger, redis_url):
    await ledger.append(5)
    events = await ledger.log.read_all(LEDGER)
    destination = await open_destination(f"{redis_url}?stream=test:{uuid.uuid4().hex}")
    try:
        await destination.deliver([events[0], events[4]])
        with pytest.raises(DestinationError, match="stream ids only grow"):
            await destination.deliver([events[2]])
    finally:
        await destination.close()


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:1/none",
                                 "redis://127.0.0.1:1/0?stream=x", "http://127.0.0.1:1/hook"])
async def test_a_destination_that_is_down_is_a_destination_error(ledger, url):
    events = await ledger.log.read_all(LEDGER)
    with pytest.raises(DestinationError):
        destination = await open_destination(
            url, DestinationOptions(webhook_secret=SECRET, timeout=1.0))
        try:
            await destination.deliver(events)
        finally:
            await destination.close()


async def test_a_webhook_posts_signed_events_and_a_2xx_confirms(ledger, receiver):
    await ledger.append(4)
    events = await ledger.log.read_all(LEDGER)
    destination = await open_destination(receiver.url, DestinationOptions(webhook_secret=SECRET))
    try:
        await destination.deliver(events)
        await destination.deliver(events)
    finally:
        await destination.close()
    assert receiver.held == {e.sequence: e.hash.hex() for e in events}
    assert receiver.deliveries == [f"{LEDGER}:1-5"] * 2


async def test_a_slow_or_garbage_answering_webhook_is_a_destination_error(ledger, receiver):
    events = await ledger.log.read_all(LEDGER)
    receiver.delay = 1.0
    destination = await open_destination(
        receiver.url, DestinationOptions(webhook_secret=SECRET, timeout=0.2))
    try:
        with pytest.raises(DestinationError, match="Timeout"):
            await destination.deliver(events)
        receiver.delay, receiver.garbage = 0.0, True
        with pytest.raises(DestinationError, match="answered 502"):
            await destination.deliver(events)
    finally:
        await destination.close()


async def test_an_unknown_scheme_or_a_webhook_without_secret_is_refused():
    with pytest.raises(InvalidConsumer, match="no destination for URL scheme 'ftp'"):
        await open_destination("ftp://x/y")
    with pytest.raises(InvalidConsumer, match="secret"):
        await open_destination("http://127.0.0.1/hook")


async def test_a_stream_key_holding_something_else_is_a_destination_error(ledger, redis_url):
    import redis.asyncio
    key = f"test:{uuid.uuid4().hex}"
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(key, "not a stream")
    await client.aclose()
    destination = await open_destination(f"{redis_url}?stream={key}")
    try:
        with pytest.raises(DestinationError, match="WRONGTYPE"):
            await destination.deliver(await ledger.log.read_all(LEDGER))
    finally:
        await destination.close()
