"""Gap-free, commit-ordered sequences under concurrent appenders on separate connections."""

from __future__ import annotations

import asyncio

from canonlog.application.chain_verification import verify_chain
from canonlog.domain.errors import ConcurrencyConflict
from canonlog.domain.events import AppendRequest, NewEvent, StreamState
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

APPENDERS = 8
APPENDS_EACH = 40


async def test_concurrent_appenders_get_a_gap_free_verifiable_sequence(database):
    writer = await AsyncpgEventLog.connect(database.app.uri())
    grant = await writer.acquire_grant("main", "writer-a")
    logs = [await AsyncpgEventLog.connect(database.app.uri(), max_size=1) for _ in range(APPENDERS)]

    async def appender(index: int, log: AsyncpgEventLog) -> list[int]:
        sequences = []
        for n in range(APPENDS_EACH):
            result = await log.append(grant, AppendRequest.create(
                f"stream-{index % 3}", [NewEvent.create("tick", {"appender": index, "n": n})]))
            sequences += [e.sequence for e in result.events]
        return sequences

    results = await asyncio.gather(*(appender(i, log) for i, log in enumerate(logs)))
    acknowledged = sorted(s for r in results for s in r)
    total = APPENDERS * APPENDS_EACH
    assert acknowledged == list(range(2, total + 2))
    report = await verify_chain(writer, "main")
    assert report.ok, report.breaks
    assert report.events_checked == total + 1
    for log in logs:
        await log.close()
    await writer.close()


async def test_a_reader_that_has_seen_n_sees_every_sequence_up_to_n(database):
    writer = await AsyncpgEventLog.connect(database.app.uri(), max_size=4)
    reader = await AsyncpgEventLog.connect(database.app.uri(), max_size=1)
    grant = await writer.acquire_grant("main", "writer-a")
    stop = asyncio.Event()

    async def write() -> None:
        for n in range(120):
            await writer.append(grant, AppendRequest.create("s", [NewEvent.create("t", {"n": n})]))
        stop.set()

    async def read() -> int:
        checks = 0
        while not stop.is_set():
            head = await reader.head("main")
            events = await reader.read_all("main", after=0, limit=head.sequence)
            assert [e.sequence for e in events] == list(range(1, head.sequence + 1))
            checks += 1
        return checks

    writes = [asyncio.create_task(write()) for _ in range(3)]
    checks = await read()
    await asyncio.gather(*writes)
    assert checks > 0
    await reader.close()
    await writer.close()


async def test_concurrent_no_stream_appends_let_exactly_one_win(database):
    grant_log = await AsyncpgEventLog.connect(database.app.uri())
    grant = await grant_log.acquire_grant("main", "writer-a")
    logs = [await AsyncpgEventLog.connect(database.app.uri(), max_size=1) for _ in range(6)]

    async def create(log: AsyncpgEventLog) -> bool:
        try:
            await log.append(grant, AppendRequest.create(
                "unique-stream", [NewEvent.create("created", {})],
                expected_version=StreamState.NO_STREAM))
        except ConcurrencyConflict:
            return False
        return True

    outcomes = await asyncio.gather(*(create(log) for log in logs))
    assert outcomes.count(True) == 1
    assert (await grant_log.head("main")).sequence == 2
    for log in logs:
        await log.close()
    await grant_log.close()
