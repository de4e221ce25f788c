"""The append function's answer: one row that says everything, replays included, so
each PostgreSQL driver makes one call per batch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from canonlog.application.ports import AppendResult
from canonlog.domain.errors import ConcurrencyConflict, InvalidEvent
from canonlog.domain.events import AppendRequest, NewEvent, StreamState, WriteContext
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.event_log import Driver, PostgresEventLog
from canonlog.infrastructure.postgres.psycopg_log import PsycopgDriver
from canonlog.infrastructure.postgres.queries import QUERIES


class CountingDriver:
    """A real driver that records the calls the event log makes through it."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any) -> Any:
            self.calls.append(name)
            return await method(*args)

        return counted


@pytest.fixture(params=["asyncpg", "psycopg"])
async def counted(request, database) -> AsyncIterator[tuple[PostgresEventLog, CountingDriver]]:
    if request.param == "asyncpg":
        driver: Driver = (await AsyncpgEventLog.connect(database.app.uri())).driver
    else:
        driver = await PsycopgDriver.open(database.app.uri(), max_size=2)
    counting = CountingDriver(driver)
    log = PostgresEventLog(counting)
    yield log, counting
    await log.close()


def request(stream: str, *amounts: int, execution_id: str | None = None,
            expected=StreamState.ANY) -> AppendRequest:
    return AppendRequest.create(
        stream, [NewEvent.create("paid", {"amount": a}, event_id=uuid.uuid4()) for a in amounts],
        expected_version=expected, context=WriteContext(execution_id=execution_id),
    )


async def test_a_replayed_request_is_answered_by_the_one_append_call(counted):
    log, driver = counted
    grant = await log.acquire_grant("main", "writer-a")
    original = await log.append(grant, request("order-1", 10, 20, execution_id="pay-1"))
    driver.calls.clear()
    # Event ids are not part of the request digest: a retry may bring new ones.
    outcomes = await log.append_batch(grant, [
        request("order-2", 5, execution_id="ship-2"),
        request("order-1", 10, 20, execution_id="pay-1"),
        request("order-2", 5, execution_id="ship-2"),
        request("order-1", 30, expected=1),
    ])
    assert driver.calls == ["append"]
    first, replay, replay_in_batch, conflict = outcomes
    assert isinstance(replay, AppendResult) and replay.replayed
    assert replay.events == original.events
    assert isinstance(first, AppendResult) and not first.replayed
    assert isinstance(replay_in_batch, AppendResult) and replay_in_batch.replayed
    assert replay_in_batch.events == first.events
    assert isinstance(conflict, ConcurrencyConflict) and conflict.actual == 2
    assert await log.read_all("main", after=1) == [*original.events, *first.events]


async def test_a_batch_of_refusals_and_records_is_one_call(counted):
    log, driver = counted
    grant = await log.acquire_grant("main", "writer-a")
    driver.calls.clear()
    outcomes = await log.append_batch(grant, [
        AppendRequest("$ledger", (NewEvent.create("paid", {"amount": 1}),)),
        request("order-1", 1),
        request("order-1", 2, expected=StreamState.NO_STREAM),
    ])
    assert driver.calls == ["append"]
    invalid, recorded, conflict = outcomes
    assert isinstance(invalid, InvalidEvent) and "reserved" in str(invalid)
    assert isinstance(recorded, AppendResult) and recorded.events[0].sequence == 2
    assert isinstance(conflict, ConcurrencyConflict) and conflict.actual == 1


@pytest.fixture
async def app(database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.app.uri())
    await conn.execute("SELECT canonlog.acquire_grant_v1('main', 'writer-a')")
    yield conn
    await conn.close()


def call_args(streams: list[str], expected: list[int | None], executions: list[str | None],
              amounts: list[int] | None = None) -> tuple[Any, ...]:
    """The append function's arguments for one event per request, payload {"n": amount}."""
    n = len(streams)
    nothing: list[Any] = [None] * n
    payloads = [f'{{"n":{a}}}'.encode() for a in amounts or range(n)]
    return ("main", "writer-a", 1, None, streams, expected, nothing, [1] * n, nothing,
            executions, nothing, nothing, nothing, nothing, nothing, ["t"] * n, payloads,
            [b"{}"] * n, nothing, nothing)


async def test_each_result_column_holds_one_meaning(app):
    row = await app.fetchrow(QUERIES["append"], *call_args(
        ["a", "b", "$c", "a", "b"], [None, None, None, 5, None], [None, "x", None, None, "x"],
        [0, 1, 2, 3, 1]))
    assert row["outcomes"] == [None, None, "invalid", "conflict", "replayed"]
    assert row["first_sequence"] == 2 and len(row["hashes"]) == 2
    assert row["first_versions"] == [1, 1, None, None, None]
    assert row["problems"] == [None, None, "stream_id $c is reserved for the ledger's own events",
                               None, None]
    assert row["conflict_versions"] == [None, None, None, 1, None]
    stored = await app.fetchrow("SELECT * FROM canonlog.events WHERE ledger_id = 'main' AND seq = 3")
    (replayed,) = row["replayed_events"]
    assert dict(replayed) == dict(stored)


async def test_a_batch_recorded_whole_leaves_the_refusal_columns_empty(app):
    row = await app.fetchrow(QUERIES["append"], *call_args(["a", "b"], [0, None], [None, "y"]))
    assert row["outcomes"] is None and row["problems"] is None
    assert row["conflict_versions"] is None and row["replayed_events"] is None
    assert row["first_versions"] == [1, 1]


async def test_a_call_that_records_nothing_says_so(app):
    row = await app.fetchrow(QUERIES["append"], *call_args(["a"], [3], [None]))
    assert row["outcomes"] == ["conflict"] and row["conflict_versions"] == [0]
    assert row["first_sequence"] is None and row["hashes"] is None and row["recorded_at"] is None
