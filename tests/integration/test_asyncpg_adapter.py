"""What the asyncpg adapter adds beyond the contract: its connection for appends."""

from __future__ import annotations

import asyncio

from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog


def request(stream: str, n: int = 0) -> AppendRequest:
    return AppendRequest.create(stream, [NewEvent.create("tick", {"n": n})])


async def test_a_pool_of_one_connection_serves_reads_between_appends(database):
    """The connection the adapter keeps for appends goes back to a pool that has no
    other to give, so reads and appends on a pool of one never wait for each other."""
    log = await AsyncpgEventLog.connect(database.app.uri(), min_size=1, max_size=1)
    try:
        grant = await log.acquire_grant("main", "writer-a")
        for n in range(3):
            await asyncio.wait_for(log.append(grant, request("s", n)), timeout=10)
            head = await asyncio.wait_for(log.head("main"), timeout=10)
            assert head.sequence == n + 2
        results = await asyncio.wait_for(
            asyncio.gather(*(log.append(grant, request(f"t-{i}")) for i in range(4)),
                           log.read_all("main")),
            timeout=10,
        )
        assert sorted(e.sequence for r in results[:4] for e in r.events) == [5, 6, 7, 8]
    finally:
        await asyncio.wait_for(log.close(), timeout=10)


async def test_appends_reuse_one_connection_while_the_pool_has_others(database):
    log = await AsyncpgEventLog.connect(database.app.uri(), min_size=1, max_size=4)
    try:
        grant = await log.acquire_grant("main", "writer-a")
        pids = set()
        for n in range(5):
            await log.append(grant, request("s", n))
            assert log.driver._appender is not None
            pids.add(log.driver._appender.get_server_pid())
        assert len(pids) == 1
        assert (await log.head("main")).sequence == 6
    finally:
        await log.close()
