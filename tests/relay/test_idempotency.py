"""IdempotencyService on PostgreSQL: results returned until they expire, one winner
among concurrent stores, expired records cleaned up, keys from canonical payloads."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from canonlog.application.idempotency import IdempotencyService, generate_idempotency_key
from canonlog.domain.errors import InvalidEvent, InvalidIdempotencyKey
from canonlog.infrastructure.postgres.idempotency import PostgresIdempotencyStore


@pytest.fixture
async def service(database):
    pool = await asyncpg.create_pool(database.app.uri(), min_size=1, max_size=8)
    yield IdempotencyService(PostgresIdempotencyStore(pool))
    await pool.close()


def test_the_key_is_operation_aggregate_and_16_hex_of_the_canonical_payload():
    key = generate_idempotency_key("refund", "order-7", {"b": 1, "a": [1, 2]})
    assert key == generate_idempotency_key("refund", "order-7", {"a": [1, 2], "b": 1})
    operation, aggregate, digest = key.split(":")
    assert (operation, aggregate, len(digest)) == ("refund", "order-7", 16)
    # SHA-256 of the canonical JSON {"a":[1,2],"b":1}
    assert digest == "94a786c3662bc7be"
    assert key != generate_idempotency_key("refund", "order-7", {"a": [1, 2], "b": 2})
    with pytest.raises(InvalidEvent):
        generate_idempotency_key("refund", "order-7", {"x": float("nan")})


async def test_a_stored_result_is_returned_until_it_expires(service):
    assert await service.check("k1") is None
    assert await service.store("k1", {"status": 202, "sequence": 4}) == {"status": 202,
                                                                      "sequence": 4}
    assert await service.check("k1") == {"status": 202, "sequence": 4}
    assert await service.store("k1", {"status": 500}) == {"status": 202, "sequence": 4}
    await service.store("short", {"n": 1}, ttl=0.05)
    await asyncio.sleep(0.1)
    assert await service.check("short") is None
    assert await service.store("short", {"n": 2}) == {"n": 2}  # an expired key is free again


async def test_concurrent_stores_of_one_key_agree_on_one_winner(service):
    results = await asyncio.gather(*(service.store("race", {"writer": i}) for i in range(8)))
    assert len({r["writer"] for r in results}) == 1
    assert await service.check("race") == results[0]


async def test_cleanup_deletes_only_expired_records(service):
    await service.store("old", {"n": 1}, ttl=0.01)
    await service.store("live", {"n": 2})
    await asyncio.sleep(0.05)
    assert await service.cleanup_expired() == 1
    assert await service.check("live") == {"n": 2}


async def test_bad_keys_and_ttls_are_refused(service):
    with pytest.raises(InvalidIdempotencyKey):
        await service.store("", {"n": 1})
    with pytest.raises(ValueError):
        await service.store("k", {"n": 1}, ttl=0)
