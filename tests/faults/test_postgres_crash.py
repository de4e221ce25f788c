"""PostgreSQL crashes under concurrent appends: nothing acknowledged is lost or doubled,
the same writer serves again by itself, and a subscription follows throughout."""

from __future__ import annotations

import asyncio
import time

import pytest

import canonlog
from tests.faults.harness import AppendLoad, audit

#: Seconds within which the writer must acknowledge appends again once PostgreSQL is back.
SERVE_AGAIN_WITHIN = 15.0


def crash_settings(crashable, tmp_path) -> canonlog.Settings:
    return canonlog.Settings(
        dsn=crashable.app.uri(), admin_dsn=crashable.admin.uri(), data_dir=tmp_path,
        lease_ttl=2.0, lease_renew_interval=0.5, append_timeout=5.0, log_level="critical",
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["immediate", "sigkill"])
async def test_postgres_crashes_under_concurrent_appends_lose_and_duplicate_nothing(
        crashable, tmp_path, fault):
    server = crashable.server
    crash = server.stop_immediate if fault == "immediate" else server.kill
    async with canonlog.open(crash_settings(crashable, tmp_path)) as log:
        seen: list[int] = []
        caught_up = asyncio.Event()
        head = 0

        async def follow() -> None:
            async for event in log.subscribe(poll_interval=0.2):
                seen.append(event.sequence)
                if head and event.sequence >= head:
                    caught_up.set()

        subscriber = asyncio.create_task(follow())
        load = AppendLoad(log, workers=8)
        load.start()
        await load.wait_for_acks(20)
        longest = 0.0
        for _ in range(3):
            await load.wait_for_acks(20, after=time.monotonic())
            await asyncio.to_thread(crash)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(server.start)
            restarted = time.monotonic()
            served = await load.wait_for_acks(5, after=restarted, within=SERVE_AGAIN_WITHIN)
            longest = max(longest, served - restarted)
        await load.stop()
        health = log.writer.health()
        assert health.healthy, health
        head = (await log.head()).sequence
        if seen and seen[-1] >= head:
            caught_up.set()
        async with asyncio.timeout(10):
            await caught_up.wait()
        subscriber.cancel()
    # The subscription lived through every crash and skipped nothing.
    assert seen == list(range(1, len(seen) + 1))
    result = await audit(crashable.admin.uri(), crashable.app.uri(), load.acked)
    assert result.clean, result
    assert result.events >= 2 * len(load.acked)
    assert longest < SERVE_AGAIN_WITHIN
