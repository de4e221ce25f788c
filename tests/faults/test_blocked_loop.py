"""The writer's event loop blocked past the lease ttl, with the advisory-lock lease and
with Redis: alone, it recovers by itself; after another instance took over, nothing it
still had in hand lands under its old epoch."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.acceptance.processes import WriterProcess
from tests.acceptance.test_writer_processes import assert_chain_verifies, config, ledger_rows

TTL = 1.0
BLOCKED_AT = 10
BLOCK_SECONDS = 2.5
#: Long enough for a second writer process to start and take over while the first is
#: still blocked, even on a loaded machine: if the first woke first, it would renew
#: its own lease and the takeover this test is about would not happen.
TAKEOVER_BLOCK_SECONDS = 8.0


def lease_config(database, tmp_path, lease: str, redis_url: str, **extra):
    return config(database, tmp_path, lease_ttl=TTL, lease_renew_interval=0.3, pause=0.02,
                  concurrency=4, **({"redis_url": redis_url} if lease == "redis" else {}),
                  **extra)


@pytest.mark.slow
@pytest.mark.parametrize("lease", ["advisory", "redis"])
async def test_a_writer_blocked_past_its_ttl_recovers_by_itself(
        database, tmp_path, redis_url, lease):
    writer = WriterProcess.start(**lease_config(database, tmp_path, lease, redis_url),
                                 env={"CANONLOG_TEST_BLOCK_AT": f"{BLOCKED_AT}:{BLOCK_SECONDS}"})
    try:
        writer.wait_for("BLOCKED", timeout=30)
        unblocked = float(writer.of("BLOCKED")[0].fields[0]) + BLOCK_SECONDS
        acks = len(writer.of("ACK"))
        writer.wait_for("ACK", acks + 20, timeout=20)
        served = min(line.seen_at for line in writer.of("ACK")[acks:])
    finally:
        writer.kill()
    epochs = sorted({int(line.fields[2]) for line in writer.of("ACK")})
    first_epoch = int(writer.of("READY")[0].fields[0])
    assert epochs[0] == first_epoch and epochs[-1] == first_epoch + 1, epochs
    assert served - unblocked < 10.0
    await assert_chain_verifies(database)


@pytest.mark.slow
@pytest.mark.parametrize("lease", ["advisory", "redis"])
async def test_after_a_takeover_nothing_lands_under_the_blocked_writers_epoch(
        database, tmp_path, redis_url, lease):
    old = WriterProcess.start(**lease_config(database, tmp_path, lease, redis_url),
                              env={"CANONLOG_TEST_BLOCK_AT":
                                   f"{BLOCKED_AT}:{TAKEOVER_BLOCK_SECONDS}"})
    new = None
    try:
        old.wait_for("BLOCKED", timeout=30)
        blocked = float(old.of("BLOCKED")[0].fields[0])
        await asyncio.sleep(max(0.0, blocked + TTL * 1.3 - time.monotonic()))
        new = WriterProcess.start(**lease_config(database, tmp_path, lease, redis_url,
                                                 node="node-2", start=100_000))
        new.wait_for("ACK", 5, timeout=20)
        # The scenario: the takeover happened while the old writer was still blocked.
        assert new.of("ACK")[0].seen_at < blocked + TAKEOVER_BLOCK_SECONDS
        old.wait_for("ERR", 1, timeout=20)  # awake again, and refused
        await asyncio.sleep(1.0)
        new.wait_for("ACK", len(new.of("ACK")) + 5, timeout=20)
    finally:
        old.kill()
        if new is not None:
            new.kill()
    old_epoch = int(old.of("READY")[0].fields[0])
    new_epoch = int(new.of("READY")[0].fields[0])
    assert new_epoch > old_epoch
    assert all(int(line.fields[2]) == old_epoch for line in old.of("ACK"))
    refusals = {line.fields[1] for line in old.of("ERR")}
    assert refusals <= {"WriterLeaseLost", "LeaseUnavailable", "WriterStopped", "StaleWriter"}, \
        refusals
    rows = await ledger_rows(database)
    takeover = next(r["seq"] for r in rows
                    if r["stream_id"] == "$ledger" and r["epoch"] == new_epoch)
    assert all(r["seq"] < takeover for r in rows if r["epoch"] <= old_epoch)
    await assert_chain_verifies(database)
