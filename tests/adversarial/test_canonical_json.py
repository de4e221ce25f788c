"""A direct caller of the append function, as the application's login, cannot store
a payload or metadata that canonical JSON v1 refuses: the call raises CL020 naming
the problem, writes nothing, and takes no sequence number."""

from __future__ import annotations

import asyncpg
import pytest

from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.support.refused_json import ACCEPTED, REFUSED

APPEND = (
    "SELECT first_sequence FROM canonlog.append_v2($1, $2, $3, NULL, $4::text[],"
    " array_fill(NULL::bigint, ARRAY[$5::int]), array_fill(NULL::bigint, ARRAY[$5::int]),"
    " $6::int[], array_fill(NULL::text, ARRAY[$5::int]), array_fill(NULL::text, ARRAY[$5::int]),"
    " array_fill(NULL::text, ARRAY[$5::int]), array_fill(NULL::text, ARRAY[$5::int]),"
    " array_fill(NULL::text, ARRAY[$5::int]), array_fill(NULL::timestamptz, ARRAY[$5::int]),"
    " array_fill(NULL::uuid, ARRAY[$7::int]), array_fill('thing'::text, ARRAY[$7::int]),"
    " $8::bytea[], $9::bytea[], array_fill(NULL::text, ARRAY[$7::int]),"
    " array_fill(NULL::bytea, ARRAY[$7::int]))"
)


class Ledger:
    """The ledger main, granted to writer-a, and a direct connection as the app login."""

    def __init__(self, conn: asyncpg.Connection, epoch: int) -> None:
        self.conn, self.epoch = conn, epoch

    async def append(self, payloads: list[bytes], metadata: list[bytes] | None = None,
                     requests: int = 1) -> int | None:
        """One call: the events split evenly over `requests` requests on stream s."""
        per_request = len(payloads) // requests
        return await self.conn.fetchval(
            APPEND, "main", "writer-a", self.epoch, ["s"] * requests, requests,
            [per_request] * requests, len(payloads), payloads,
            metadata or [b"{}"] * len(payloads))

    async def head(self) -> int:
        return await self.conn.fetchval(
            "SELECT coalesce(max(seq), 0) FROM canonlog.events WHERE ledger_id = 'main'")


@pytest.fixture
async def ledger(database):
    log = await AsyncpgEventLog.connect(database.app.uri())
    grant = await log.acquire_grant("main", "writer-a")
    await log.append(grant, AppendRequest.create("s", [NewEvent.create("x", {"n": 1})]))
    await log.close()
    conn = await asyncpg.connect(database.app.uri())
    yield Ledger(conn, grant.epoch)
    await conn.close()


async def refusal(ledger: Ledger, payloads: list[bytes], **kwargs: object) -> str:
    head = await ledger.head()
    with pytest.raises(asyncpg.PostgresError) as caught:
        await ledger.append(payloads, **kwargs)  # type: ignore[arg-type]
    assert caught.value.sqlstate == "CL020", caught.value
    assert await ledger.head() == head
    # No sequence number was taken: the next good call continues the chain.
    assert await ledger.append([b'{"n":2}']) == head + 1
    return str(caught.value)


@pytest.mark.parametrize(("payload", "problem"), REFUSED)
async def test_a_direct_call_cannot_store_a_payload_canonical_json_refuses(
        ledger, payload, problem):
    assert await refusal(ledger, [payload]) == f"canonlog: event 1 of the batch: payload {problem}"


@pytest.mark.parametrize(("payload", "problem"), REFUSED[:3] + REFUSED[8:10])
async def test_nor_such_metadata(ledger, payload, problem):
    assert await refusal(ledger, [b"{}"], metadata=[payload]) == (
        f"canonlog: event 1 of the batch: metadata {problem}")


@pytest.mark.parametrize(("payload", "problem"), [REFUSED[0], REFUSED[8]])
async def test_one_refused_event_refuses_the_whole_batch(ledger, payload, problem):
    payloads = [b'{"n":%d}' % i for i in range(100)]
    payloads[57] = payload
    assert await refusal(ledger, payloads, requests=10) == (
        f"canonlog: event 58 of the batch: payload {problem}")


@pytest.mark.parametrize(("payload", "problem"), [REFUSED[1], REFUSED[10]])
async def test_nor_one_event_of_a_batch_with_such_metadata(ledger, payload, problem):
    payloads = [b'{"n":%d}' % i for i in range(100)]
    metadata = [b"{}", b'{"trace":"t-1"}'] * 50
    metadata[57] = payload
    assert await refusal(ledger, payloads, metadata=metadata, requests=10) == (
        f"canonlog: event 58 of the batch: metadata {problem}")


async def test_canonical_json_at_the_edges_is_stored_byte_for_byte(ledger):
    first = await ledger.append(ACCEPTED)
    stored = await ledger.conn.fetch(
        "SELECT payload FROM canonlog.events WHERE ledger_id = 'main' AND seq >= $1"
        " ORDER BY seq", first)
    assert [row["payload"] for row in stored] == ACCEPTED


async def test_a_large_batch_of_floats_needs_no_subtransaction_per_event(ledger):
    """Each event's check runs without an EXCEPTION block, so a batch of 1,000
    events with floats neither overflows the subtransaction cache nor slows down."""
    payloads = [b'{"a":%d.5,"b":1e+%d}' % (i, 16 + i % 200) for i in range(1000)]
    assert await ledger.append(payloads, requests=100) == await ledger.head() - 999
