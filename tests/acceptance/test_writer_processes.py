"""The canonical writer as real processes: killed, paused, and cut off from Redis."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import asyncpg
import pytest
import redis.asyncio as redis

from canonlog.application.chain_verification import verify_chain
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.acceptance.processes import WriterProcess


def config(database, tmp_path, **extra):
    return {"dsn": database.app.uri(), "admin_dsn": database.admin.uri(),
            "data_dir": str(tmp_path / extra.pop("node", "node-1")), "writer_id": "writer-1",
            "start": 0, "count": 1_000_000, **extra}


async def ledger_rows(database):
    conn = await asyncpg.connect(database.admin.uri())
    try:
        return await conn.fetch(
            "SELECT seq, execution_id, event_type, epoch, writer_id, stream_id"
            " FROM canonlog.events WHERE ledger_id = 'main' ORDER BY seq")
    finally:
        await conn.close()


async def assert_chain_verifies(database) -> None:
    log = await AsyncpgEventLog.connect(database.app.uri())
    try:
        report = await verify_chain(log, "main")
        assert report.ok, report.breaks
    finally:
        await log.close()


async def test_kill_9_mid_batch_loses_no_acknowledged_event_and_duplicates_none(
        database, tmp_path):
    """Killed at random moments under 16 concurrent callers, restarted, retried."""
    rng = random.Random(7)
    acknowledged: dict[int, int] = {}
    start = 0
    for _ in range(6):
        writer = WriterProcess.start(**config(database, tmp_path, start=start, concurrency=16))
        writer.wait_for("READY")
        writer.wait_for("ACK", 20)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        writer.signal(signal.SIGKILL)
        writer.kill()
        acknowledged.update(writer.acked())
        # The next run starts before the newest acknowledgement, so it retries
        # appends that committed (acknowledged or not) with the same execution ids.
        start = max(acknowledged) - 40
    final = WriterProcess.start(**config(database, tmp_path, start=0, count=start + 60,
                                         concurrency=16))
    try:
        final.wait_for("DONE", timeout=60)
    finally:
        final.kill()
    replays = final.acked()
    for n, sequence in acknowledged.items():
        assert replays[n] == sequence, f"exec-{n} moved from {sequence} to {replays[n]}"

    rows = await ledger_rows(database)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    by_execution: dict[str, list] = {}
    for row in rows:
        if row["execution_id"]:
            by_execution.setdefault(row["execution_id"], []).append(row)
    assert set(by_execution) == {f"exec-{n}" for n in range(start + 60)}
    for execution, events in by_execution.items():
        # Exactly one request's two events, adjacent: no duplicate, no partial batch.
        assert [e["event_type"] for e in events] == ["tick", "tock"], execution
        assert events[1]["seq"] == events[0]["seq"] + 1, execution
    grants = [r for r in rows if r["stream_id"] == "$ledger"]
    assert [g["epoch"] for g in grants] == list(range(1, 8))
    await assert_chain_verifies(database)


async def test_a_paused_writer_is_fenced_when_it_resumes(database, tmp_path, redis_url):
    """SIGSTOP past the lease; the same writer restarts elsewhere; the old one wakes up."""
    old = WriterProcess.start(**config(database, tmp_path, redis_url=redis_url, lease_ttl=1.0,
                                       lease_renew_interval=0.3, pause=0.02))
    new = None
    try:
        old.wait_for("ACK", 10)
        old.signal(signal.SIGSTOP)
        await asyncio.sleep(1.5)  # the old lease expires in Redis
        new = WriterProcess.start(**config(database, tmp_path, node="node-2",
                                           redis_url=redis_url, lease_ttl=1.0,
                                           lease_renew_interval=0.3, pause=0.05))
        new.wait_for("ACK", 3)
        old.signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        old.wait_for("ERR", 3, timeout=10)
        await asyncio.sleep(1.0)
        refusals = {line.fields[1] for line in old.of("ERR") if line.seen_at >= resumed_at}
        assert refusals <= {"WriterLeaseLost", "WriterStopped", "StaleWriter"}, refusals
        new.wait_for("ACK", len(new.of("ACK")) + 3)
    finally:
        old.kill()
        if new is not None:
            new.kill()
    rows = await ledger_rows(database)
    old_epoch = int(old.of("READY")[0].fields[0])
    new_epoch = int(new.of("READY")[0].fields[0])
    assert new_epoch == old_epoch + 1
    new_grant = next(r["seq"] for r in rows
                     if r["stream_id"] == "$ledger" and r["epoch"] == new_epoch)
    assert all(r["seq"] < new_grant for r in rows if r["epoch"] == old_epoch)
    # What the paused writer acknowledged was written before the takeover. (When the test
    # read an ACK line says nothing: one written before SIGSTOP may be read after it.)
    late = [line for line in old.of("ACK")
            if int(line.fields[1]) >= new_grant or int(line.fields[2]) != old_epoch]
    assert late == [], "the paused writer acknowledged a write after it was fenced"
    await assert_chain_verifies(database)


async def test_writes_fail_closed_while_redis_is_down_and_resume_with_a_new_lease(
        database, tmp_path, valkey_server):
    url = f"redis://127.0.0.1:{valkey_server.port}/0"
    writer = WriterProcess.start(**config(database, tmp_path, redis_url=url, lease_ttl=1.5,
                                          lease_renew_interval=0.3, concurrency=8, pause=0.01))
    try:
        writer.wait_for("ACK", 30)
        first_epoch = int(writer.of("READY")[0].fields[0])
        valkey_server.stop()
        stopped_at = time.monotonic()
        await asyncio.sleep(2.0)
        restarting_at = time.monotonic()
        valkey_server.start()
        restarted_at = time.monotonic()
        acks_before_restart = len(writer.of("ACK"))
        writer.wait_for("ACK", acks_before_restart + 20, timeout=20)
    finally:
        writer.kill()
    # An append submitted while Redis was down joined a batch whose halt check ran
    # after the stop, so none of them may have been acknowledged.
    outage = [line for line in writer.of("ACK")
              if stopped_at < float(line.fields[3]) < restarting_at]
    assert outage == [], f"{len(outage)} appends acknowledged while Redis was down"
    refusals = {line.fields[1] for line in writer.of("ERR")
                if stopped_at <= float(line.fields[2]) <= restarting_at}
    assert refusals and refusals <= {"HaltStateUnknown", "WriterLeaseLost", "SystemHalted"}, \
        refusals
    resumed = [line for line in writer.of("ACK") if float(line.fields[3]) > restarted_at]
    assert resumed and all(int(line.fields[2]) > first_epoch for line in resumed)
    client = redis.Redis.from_url(url)
    try:
        holder = await client.get("canonlog:lease:main")
    finally:
        await client.aclose()
    assert holder is not None and holder.decode().startswith("writer-1:")
    await assert_chain_verifies(database)


async def test_a_second_instance_holding_the_redis_lease_without_the_grant_cannot_write(
        database, tmp_path, redis_url):
    from canonlog.application.writer import EventWriterService, WriterConfig
    from canonlog.domain.errors import GrantUnavailable, StaleWriter, WriterNotVerified
    from canonlog.domain.events import AppendRequest, NewEvent, WriterGrant
    from canonlog.infrastructure.head_store import MemoryHeadStore
    from canonlog.infrastructure.redis.lease import RedisLease

    client = redis.Redis.from_url(redis_url)
    await client.delete("canonlog:lease:second")
    log = await AsyncpgEventLog.connect(database.app.uri())
    try:
        first = EventWriterService(
            log, RedisLease(client, "second", "writer-a", ttl=5.0), [], MemoryHeadStore(),
            WriterConfig(ledger_id="second", writer_id="writer-a"))
        grant = await first.start()
        await first.append(AppendRequest.create("s", [NewEvent.create("x", {})]))
        # Another instance takes the lease key by force (a Redis operator error, a
        # split brain): it still has no grant.
        await client.delete("canonlog:lease:second")
        intruder = EventWriterService(
            log, RedisLease(client, "second", "writer-b", ttl=5.0), [], MemoryHeadStore(),
            WriterConfig(ledger_id="second", writer_id="writer-b"))
        with pytest.raises(GrantUnavailable, match="ceremony"):
            await intruder.start()
        with pytest.raises(WriterNotVerified):
            await intruder.append(AppendRequest.create("s", [NewEvent.create("x", {})]))
        with pytest.raises(StaleWriter):
            await log.append(WriterGrant("second", "writer-b", grant.epoch),
                             AppendRequest.create("s", [NewEvent.create("x", {})]))
        events = await log.read_all("second")
        assert {e.writer_id for e in events} == {"writer-a"}
        await first.stop()
    finally:
        await log.close()
        await client.aclose()
