"""Hash chains in tests: checked link by link, rewritten as a superuser would, and one
script run on the in-memory and the PostgreSQL event log side by side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from canonlog.application.ports import EventLog
from canonlog.domain.events import GENESIS_HASH, RecordedEvent, RegisteredKey
from canonlog.domain.hashing import event_hash_v1
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.support.roles import by_role


def assert_chain_verifies(events: list[RecordedEvent]) -> None:
    """Asserts sequences 1..N, each event linked to the one before and its hash recomputed."""
    previous = GENESIS_HASH
    for number, event in enumerate(events, 1):
        assert event.sequence == number
        assert event.prev_hash == previous, f"link broken at {number}"
        assert event.hash == event_hash_v1(event), f"hash wrong at {number}"
        previous = event.hash


def rechain(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """What a superuser who rewrites events and recomputes every hash leaves behind."""
    fixed, prev = [], events[0].prev_hash
    for event in events:
        event = replace(event, prev_hash=prev)
        event = replace(event, hash=event_hash_v1(event))
        fixed.append(event)
        prev = event.hash
    return fixed


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a script returned on one event log, and the ledger 'main' it left."""

    results: list[object]
    events: list[RecordedEvent]
    keys: list[RegisteredKey]


async def run_side_by_side(
    database: Any, script: Callable[[EventLog], Awaitable[list[object]]]
) -> tuple[Recorded, Recorded]:
    """Runs script on a new in-memory log and on the test database (asyncpg, each step
    as its login: tests.support.roles); returns what each recorded, memory first."""
    recorded = []
    for event_log in (MemoryEventLog(), await by_role(AsyncpgEventLog, database)):
        try:
            results = await script(event_log)
            recorded.append(Recorded(results, await event_log.read_all("main", limit=10_000),
                                     await event_log.list_keys("main")))
        finally:
            await event_log.close()
    memory, postgres = recorded
    return memory, postgres
