"""One WriterLease specification, run against every adapter: memory, Redis, PostgreSQL advisory lock.

Expiry is real in every adapter: a Redis key's PX, the in-memory expiry instant,
and for the advisory lock the session's idle_session_timeout, which ends the
holder's connection (and with it the lock) once it stops renewing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio

from canonlog.application.ports import WriterLease

ADAPTERS = ["memory", "redis", "advisory"]
SHORT_TTL = 0.3
LONG_TTL = 5.0

MakeLease = Callable[..., WriterLease]


@pytest.fixture(params=ADAPTERS)
def lease_backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The adapter under test and where its server is; only that server is started."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    if request.param == "advisory":
        return "advisory", request.getfixturevalue("database").app.uri()
    return "memory", None


@pytest.fixture
async def make_lease(lease_backend: tuple[str, str | None]) -> AsyncIterator[MakeLease]:
    """A factory of leases on one fresh ledger: make_lease(writer_id, ttl=...)."""
    kind, address = lease_backend
    ledger_id = f"ledger-{uuid.uuid4().hex[:8]}"
    leases: list[WriterLease] = []
    client: redis.asyncio.Redis | None = None
    build: MakeLease
    if kind == "memory":
        from canonlog.infrastructure.memory import InMemoryLease

        registry: dict[str, tuple[str, float]] = {}

        def build(writer_id: str, ttl: float) -> WriterLease:
            return InMemoryLease(ledger_id, writer_id, ttl=ttl, registry=registry)

    elif kind == "redis":
        from canonlog.infrastructure.redis.lease import RedisLease

        assert address is not None
        client = redis.asyncio.Redis.from_url(address, socket_timeout=1.0, socket_connect_timeout=1.0)
        prefix = f"canonlog-test-{uuid.uuid4().hex[:8]}"

        def build(writer_id: str, ttl: float) -> WriterLease:
            return RedisLease(client, ledger_id, writer_id, ttl=ttl, key_prefix=prefix)

    else:
        from canonlog.infrastructure.postgres.lease import AdvisoryLockLease

        assert address is not None
        dsn = address

        def build(writer_id: str, ttl: float) -> WriterLease:
            return AdvisoryLockLease(dsn, ledger_id, writer_id, ttl=ttl)

    def make(writer_id: str, ttl: float = LONG_TTL) -> WriterLease:
        lease = build(writer_id, ttl)
        leases.append(lease)
        return lease

    yield make
    for lease in leases:
        await lease.release()
    if client is not None:
        await client.aclose()


async def test_first_acquire_wins_and_another_writer_is_refused_while_held(make_lease: MakeLease):
    first, second = make_lease("writer-a"), make_lease("writer-b")
    assert await first.acquire() is True
    assert await second.acquire() is False
    assert second.valid_until() == 0


async def test_another_instance_of_the_same_writer_id_is_refused_too(make_lease: MakeLease):
    """The holder is the instance, not the writer id: a restarted process waits its turn."""
    first, restarted = make_lease("writer-a"), make_lease("writer-a")
    assert await first.acquire() is True
    assert await restarted.acquire() is False


async def test_acquire_again_by_the_holder_keeps_the_lease(make_lease: MakeLease):
    holder, other = make_lease("writer-a"), make_lease("writer-b")
    assert await holder.acquire() is True
    assert await holder.acquire() is True
    assert await holder.renew() is True
    await holder.release()
    # One release frees it, however often the holder acquired.
    assert await other.acquire() is True


async def test_renew_keeps_the_lease_past_its_ttl(make_lease: MakeLease):
    holder, other = make_lease("writer-a", ttl=SHORT_TTL), make_lease("writer-b", ttl=SHORT_TTL)
    assert await holder.acquire() is True
    deadline = holder.valid_until()
    for _ in range(6):  # 0.6 s, twice the ttl
        await asyncio.sleep(SHORT_TTL / 3)
        assert await holder.renew() is True
        assert holder.valid_until() > deadline
        deadline = holder.valid_until()
    assert await other.acquire() is False
    assert time.monotonic() < holder.valid_until()


async def test_release_lets_another_acquire(make_lease: MakeLease):
    holder, other = make_lease("writer-a"), make_lease("writer-b")
    assert await holder.acquire() is True
    await holder.release()
    assert holder.valid_until() == 0
    assert await other.acquire() is True
    assert await holder.renew() is False


async def test_valid_until_is_zero_unheld_and_never_later_than_send_time_plus_ttl(
    make_lease: MakeLease,
):
    lease = make_lease("writer-a", ttl=LONG_TTL)
    assert lease.valid_until() == 0
    assert await lease.renew() is False
    assert lease.valid_until() == 0

    before = time.monotonic()
    assert await lease.acquire() is True
    after = time.monotonic()
    assert after < lease.valid_until() <= before + LONG_TTL
    # The holder gives up a margin in advance rather than trust the lease to the last instant.
    assert lease.valid_until() < after + LONG_TTL

    await asyncio.sleep(0.05)
    before_renew = time.monotonic()
    previous = lease.valid_until()
    assert await lease.renew() is True
    assert previous < lease.valid_until() <= before_renew + LONG_TTL


async def test_expired_lease_goes_to_another_and_the_old_holder_cannot_renew(
    make_lease: MakeLease,
):
    holder, other = make_lease("writer-a", ttl=SHORT_TTL), make_lease("writer-b", ttl=SHORT_TTL)
    assert await holder.acquire() is True
    assert await other.acquire() is False
    await asyncio.sleep(SHORT_TTL + 0.2)
    assert time.monotonic() >= holder.valid_until()
    assert await other.acquire() is True
    assert await holder.renew() is False
    assert holder.valid_until() == 0
    assert await other.renew() is True


async def test_release_by_a_non_holder_leaves_the_holders_lease(make_lease: MakeLease):
    holder, intruder, third = make_lease("writer-a"), make_lease("writer-b"), make_lease("writer-c")
    assert await holder.acquire() is True
    assert await intruder.acquire() is False
    await intruder.release()
    assert await third.acquire() is False
    assert await holder.renew() is True


async def test_release_without_holding_never_fails(make_lease: MakeLease):
    lease = make_lease("writer-a")
    await lease.release()
    await lease.release()
    assert lease.valid_until() == 0
