"""What the psycopg adapter adds beyond the contract: its pool, its types, its errors."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from canonlog.application.ports import AppendResult
from canonlog.domain.errors import (
    ConcurrencyConflict,
    InvalidEvent,
    IsolationLevelRefused,
    StorageError,
)
from canonlog.domain.events import (
    AppendRequest,
    NewEvent,
    StreamState,
    WriteContext,
)
from canonlog.domain.hashing import event_hash_v1
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog
from tests.support.ceremony import resume_by_ceremony
from tests.support.servers import APP_ROLE

TASKS = 8
APPENDS_EACH = 25


def request(stream: str, n: int = 0, expected=StreamState.ANY, context=None) -> AppendRequest:
    return AppendRequest.create(stream, [NewEvent.create("tick", {"n": n})],
                                expected_version=expected, context=context)


def full_context(n: int) -> WriteContext:
    return WriteContext(
        task_id=f"task-{n}", execution_id=f"exec-{n}", correlation_id=f"corr-{n}",
        causation_id=f"cause-{n}", agent_id="agent-1",
        writer_time=datetime(2026, 3, 4, 5, 6, 7, n, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    )


async def test_concurrent_appends_on_one_log_get_gap_free_chained_sequences(database):
    log = await PsycopgEventLog.connect(database.app.uri(), max_size=4)
    try:
        grant = await log.acquire_grant("main", "writer-a")

        async def appender(index: int) -> list[int]:
            sequences = []
            for n in range(APPENDS_EACH):
                result = await log.append(grant, request(f"stream-{index}", n))
                sequences += [e.sequence for e in result.events]
            return sequences

        results = await asyncio.gather(*(appender(i) for i in range(TASKS)))
        total = TASKS * APPENDS_EACH
        assert sorted(s for r in results for s in r) == list(range(2, total + 2))
        for sequences in results:
            assert sequences == sorted(sequences)
        stored = await log.read_all("main", limit=total + 10)
        assert [e.sequence for e in stored] == list(range(1, total + 2))
        for previous, event in itertools.pairwise(stored):
            assert event.prev_hash == previous.hash
        assert all(event.hash == event_hash_v1(event) for event in stored)
        for index in range(TASKS):
            stream = await log.read_stream("main", f"stream-{index}")
            assert [e.stream_version for e in stream] == list(range(1, APPENDS_EACH + 1))
    finally:
        await log.close()


async def test_a_call_blocked_in_the_database_does_not_hold_up_other_callers(database):
    log = await PsycopgEventLog.connect(database.app.uri(), max_size=2)
    admin = await asyncpg.connect(database.admin.uri())
    try:
        grant = await log.acquire_grant("main", "writer-a")
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE canonlog.events IN ACCESS EXCLUSIVE MODE")
        blocked = asyncio.create_task(log.append(grant, request("s")))
        for _ in range(200):
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE usename = $1 AND datname = current_database() AND wait_event_type = 'Lock'",
                APP_ROLE,
            )
            if waiting:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the append never waited for the lock")
        state = await asyncio.wait_for(log.ledger_state("main"), timeout=5)
        assert state.writer_id == "writer-a"
        assert not blocked.done()
        await lock.rollback()
        result = await asyncio.wait_for(blocked, timeout=5)
        assert result.events[0].sequence == 2
    finally:
        await admin.close()
        await log.close()


async def test_events_written_through_asyncpg_read_identically_through_psycopg(database):
    writer = await AsyncpgEventLog.connect(database.app.uri())
    reader = await PsycopgEventLog.connect(database.app.uri())
    try:
        grant = await writer.acquire_grant("main", "writer-a")
        await writer.append(grant, AppendRequest.create(
            "order-1",
            [NewEvent.create("placed", {"x": "é", "n": 1.5}, {"trace": "t"},
                             event_id=uuid.uuid4()),
             NewEvent.create("paid", {"amount": 10})],
            context=full_context(1),
        ))
        await writer.append_batch(grant, [
            request("order-2", expected=StreamState.NO_STREAM),
            request("order-1", expected=StreamState.NO_STREAM),
            request("order-3", context=WriteContext(agent_id="agent-2")),
        ])
        await writer.halt("main", "drill", "ops")
        admin = await AsyncpgEventLog.connect(database.admin.uri())
        try:
            await resume_by_ceremony(writer, governor=admin)
        finally:
            await admin.close()
        await writer.append(grant, request("order-2", expected=1))

        written = await writer.read_all("main")
        read = await reader.read_all("main")
        assert len(read) == 11
        assert read == written
        assert read[1].writer_time == full_context(1).writer_time
        assert all(e.recorded_at.tzinfo is not None for e in read)
        for stream in ("order-1", "order-2", "$ledger"):
            assert await reader.read_stream("main", stream) == await writer.read_stream(
                "main", stream)
        assert await reader.read_stream("main", "order-1", from_version=2, limit=1) == [read[2]]
        assert await reader.head("main") == await writer.head("main")
        assert await reader.ledger_state("main") == await writer.ledger_state("main")
    finally:
        await reader.close()
        await writer.close()


async def test_what_a_psycopg_append_returns_is_what_asyncpg_reads_back(database):
    writer = await PsycopgEventLog.connect(database.app.uri())
    reader = await AsyncpgEventLog.connect(database.app.uri())
    try:
        grant = await writer.acquire_grant("main", "writer-a")
        outcomes = await writer.append_batch(grant, [
            request("a"),
            request("b", 1, expected=StreamState.NO_STREAM, context=full_context(2)),
            request("b", 2, expected=StreamState.NO_STREAM),
            request("c", 3, context=WriteContext(writer_time=datetime(2026, 1, 1, tzinfo=UTC))),
        ])
        assert isinstance(outcomes[2], ConcurrencyConflict) and outcomes[2].actual == 1
        returned = [e for o in outcomes if isinstance(o, AppendResult) for e in o.events]
        assert [e.sequence for e in returned] == [2, 3, 4]
        assert await reader.read_all("main", after=1) == returned
        replay = await writer.append(grant, request("b", 1, context=full_context(2)))
        assert replay.replayed and list(replay.events) == returned[1:2]
    finally:
        await reader.close()
        await writer.close()


async def test_arrays_of_only_nulls_and_of_mixed_nulls_keep_their_types(database):
    log = await PsycopgEventLog.connect(database.app.uri())
    try:
        grant = await log.acquire_grant("main", "writer-a")
        bare = await log.append_batch(grant, [request("s", 1), request("t", 2)])
        mixed = await log.append_batch(grant, [
            request("s", 3, expected=1, context=full_context(3)),
            request("u", 4),
            AppendRequest.create("t", [NewEvent.create("x", {}, event_id=uuid.uuid4()),
                                       NewEvent.create("y", {})]),
        ])
        assert all(isinstance(o, AppendResult) for o in bare + mixed)
        stored = await log.read_all("main")
        assert [e.sequence for e in stored] == list(range(1, 8))
        assert stored[1].task_id is None and stored[1].writer_time is None
        assert stored[3].writer_time == full_context(3).writer_time
        assert stored[3].execution_id == "exec-3" and stored[4].execution_id is None
    finally:
        await log.close()


async def test_values_the_driver_cannot_send_are_refused_as_invalid_events(database):
    log = await PsycopgEventLog.connect(database.app.uri())
    try:
        grant = await log.acquire_grant("main", "writer-a")
        head = await log.head("main")
        event = NewEvent.create("x", {})
        unsendable = [
            AppendRequest("s\udc80", (event,)),
            AppendRequest("s", (event,), context=WriteContext(writer_time=datetime(2026, 1, 1))),
            AppendRequest("s", (event,), expected_version=2**70),
        ]
        for bad in unsendable:
            with pytest.raises(InvalidEvent):
                await log.append_batch(grant, [request("fine"), bad])
        assert await log.head("main") == head
        assert (await log.append(grant, request("fine"))).events[0].sequence == 2
    finally:
        await log.close()


async def test_appends_outside_read_committed_are_refused_with_a_canonlog_error(database):
    admin = await asyncpg.connect(database.admin.uri())
    try:
        await admin.execute(
            f'ALTER ROLE "{APP_ROLE}" IN DATABASE "{database.admin.database}" '
            "SET default_transaction_isolation = 'serializable'"
        )
    finally:
        await admin.close()
    log = await PsycopgEventLog.connect(database.app.uri())
    try:
        with pytest.raises(IsolationLevelRefused):
            await log.acquire_grant("main", "writer-a")
    finally:
        await log.close()


async def test_an_unreachable_server_raises_storage_error():
    missing = f"/nonexistent-{uuid.uuid4().hex}"
    with pytest.raises(StorageError) as refused:
        await PsycopgEventLog.connect(f"postgresql://nobody@/canonlog?host={missing}&port=5432")
    assert "connection failed" in str(refused.value)


async def test_a_closed_log_raises_storage_error(database):
    log = await PsycopgEventLog.connect(database.app.uri())
    await log.close()
    with pytest.raises(StorageError):
        await log.head("main")


async def test_a_connection_the_server_drops_is_reported_then_replaced(database):
    log = await PsycopgEventLog.connect(database.app.uri(), max_size=1)
    admin = await asyncpg.connect(database.admin.uri())
    try:
        await log.acquire_grant("main", "writer-a")
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = $1 AND datname = current_database()",
            APP_ROLE,
        )
        assert terminated == 1
        with pytest.raises(StorageError):
            await log.head("main")
        assert (await log.head("main")).sequence == 1
    finally:
        await admin.close()
        await log.close()


async def test_a_cancelled_caller_does_not_leave_a_busy_connection_in_the_pool(database):
    log = await PsycopgEventLog.connect(database.app.uri(), max_size=1)
    admin = await asyncpg.connect(database.admin.uri())
    try:
        grant = await log.acquire_grant("main", "writer-a")
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE canonlog.events IN ACCESS EXCLUSIVE MODE")
        blocked = asyncio.create_task(log.append(grant, request("s")))
        await asyncio.sleep(0.2)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await lock.rollback()
        # psycopg cancels the query on the server before the cancellation returns.
        assert (await asyncio.wait_for(log.head("main"), timeout=5)).sequence == 1
        result = await asyncio.wait_for(log.append(grant, request("s")), timeout=5)
        assert result.events[0].sequence == 2
    finally:
        await admin.close()
        await log.close()
