"""The writer stays live: failed background tasks, a blocked event loop, the append deadline."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import psycopg
import psycopg_pool
import pytest
import structlog

import canonlog
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.writer import EventWriterService, WriterConfig, WriterState
from canonlog.domain.errors import AppendTimeout, StorageError, WriterTaskFailed
from canonlog.domain.events import AppendRequest, NewEvent, WriteContext
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog, translated
from canonlog.infrastructure.postgres.psycopg_log import translated as psycopg_translated


@pytest.fixture(autouse=True)
def _logging_as_before():
    """canonlog.open() configures structlog when nothing has; later tests expect the defaults."""
    yield
    structlog.reset_defaults()


def req(stream: str, execution_id: str | None = None) -> AppendRequest:
    return AppendRequest.create(stream, [NewEvent.create("happened", {"i": 1})],
                                context=WriteContext(execution_id=execution_id))


def settings(database, tmp_path, **extra) -> canonlog.Settings:
    return canonlog.Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                             data_dir=tmp_path, log_level="critical", **extra)


class FailingOnce:
    """An EventLog whose next append_batch raises what the driver raised after a crash."""

    def __init__(self, inner):
        self.inner = inner
        self.fail_next = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def append_batch(self, grant, requests):
        if self.fail_next:
            self.fail_next = False
            raise asyncpg.InternalClientError("cannot switch to state 11; another operation "
                                              "(2) is in progress")
        return await self.inner.append_batch(grant, requests)


async def test_a_flusher_that_raises_fails_the_waiting_appends_and_is_restarted(database):
    event_log = await AsyncpgEventLog.connect(database.app.uri(), max_size=4)
    failing = FailingOnce(event_log)
    writer = EventWriterService(
        failing, InMemoryLease("main", "writer-a", ttl=30.0, registry={}),
        [LedgerHaltChannel(event_log)], MemoryHeadStore(),
        WriterConfig(ledger_id="main", writer_id="writer-a", append_timeout=None),
    )
    try:
        await writer.start()
        await writer.append(req("s"))
        failing.fail_next = True
        async with asyncio.timeout(10):  # an append that hangs fails the test instead
            with pytest.raises(WriterTaskFailed, match="InternalClientError"):
                await writer.append(req("s"))
            result = await writer.append(req("s"))
        assert result.events[0].sequence == 3
        health = writer.health()
        assert health.healthy and health.state is WriterState.ACCEPTING
        assert health.task_restarts == 1
        assert [p.task for p in health.problems] == ["canonlog-flusher"]
        assert "InternalClientError" in health.problems[0].error
    finally:
        await writer.stop()
        await event_log.close()


async def test_the_advisory_lock_lease_recovers_after_the_loop_was_blocked_past_its_ttl(
        database, tmp_path):
    async with canonlog.open(settings(database, tmp_path, lease_ttl=1.0,
                                      lease_renew_interval=0.3)) as log:
        await log.append("s", [canonlog.event("x", {})])
        epoch = log.writer.grant.epoch
        time.sleep(2.0)  # noqa: ASYNC251 - blocks the loop past the ttl on purpose
        blocked_until = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(5):
                    result = await log.append("s", [canonlog.event("x", {})])
                break
            except canonlog.WriterLeaseLost:
                assert time.monotonic() - blocked_until < 10, "the lease never recovered"
                await asyncio.sleep(0.1)
        assert result.events[0].epoch == epoch + 1
        assert log.writer.health().healthy


async def test_an_append_past_its_deadline_fails_and_a_retry_by_execution_id_resolves_it(
        database, tmp_path):
    async with canonlog.open(settings(database, tmp_path, append_timeout=0.5)) as log:
        await log.append("s", [canonlog.event("x", {})])
        # A superuser holds the ledger lock the append function takes, so the append waits.
        blocker = await asyncpg.connect(database.admin.uri())
        try:
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute("SELECT pg_advisory_xact_lock(1668050791, hashtext('main'))")
            started = time.monotonic()
            with pytest.raises(AppendTimeout, match="same execution id"):
                await log.append("s", [canonlog.event("x", {"n": 1})], execution_id="exec-1")
            assert time.monotonic() - started < 2.0
            await blocking.rollback()
        finally:
            await blocker.close()
        retried = await log.append("s", [canonlog.event("x", {"n": 1})], execution_id="exec-1")
        again = await log.append("s", [canonlog.event("x", {"n": 1})], execution_id="exec-1")
        assert again.replayed
        assert again.events[0].sequence == retried.events[0].sequence
        events = await log.read_stream("s")
        assert [e.execution_id for e in events].count("exec-1") == 1


@pytest.mark.parametrize("error", [
    asyncpg.InternalClientError("cannot switch to state 11"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionResetError("reset by peer"),
    TimeoutError(),
])
async def test_every_asyncpg_failure_becomes_a_storage_error(error):
    with pytest.raises(StorageError):
        async with translated():
            raise error


@pytest.mark.parametrize("error", [
    psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
    psycopg_pool.PoolClosed("the pool is closed"),
    psycopg.OperationalError("server closed the connection unexpectedly"),
    psycopg.InterfaceError("the connection is closed"),
    BrokenPipeError("broken pipe"),
    TimeoutError(),
])
async def test_every_psycopg_failure_becomes_a_storage_error(error):
    with pytest.raises(StorageError):
        async with psycopg_translated():
            raise error
