"""The canonical writer against a real PostgreSQL: verification, halts, group commit."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from canonlog.application.append_queue import OVERLAP_AT
from canonlog.application.chain_verification import verify_chain
from canonlog.application.client import LedgerClient
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.ports import AppendResult, append_one
from canonlog.application.writer import EventWriterService, WriterConfig, WriterState
from canonlog.domain.errors import (
    ConcurrencyConflict,
    GrantUnavailable,
    IdempotencyConflict,
    InvalidEvent,
    LeaseUnavailable,
    StaleWriter,
    StorageError,
    SystemHalted,
    UnsafeDurability,
    WriterInconsistency,
    WriterLeaseLost,
    WriterNotVerified,
    WriterStopped,
)
from canonlog.domain.events import AppendRequest, NewEvent, StreamState, WriteContext
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.postgres.inspector import PostgresInspector


class CountingLog:
    """Wraps an EventLog and counts batches, to observe group commit from outside."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def append_batch(self, grant, requests):
        self.batches.append(len(requests))
        return await self.inner.append_batch(grant, requests)


@pytest.fixture
async def env(database):
    logs = []
    registry: dict = {}
    heads = MemoryHeadStore()

    async def make(writer_id="writer-a", *, channels=None, heads_store=None, start=True,
                   ttl=30.0, **config):
        event_log = await AsyncpgEventLog.connect(database.app.uri(), max_size=4)
        logs.append(event_log)
        counting = CountingLog(event_log)
        writer = EventWriterService(
            counting, InMemoryLease("main", writer_id, ttl=ttl, registry=registry),
            channels or [LedgerHaltChannel(event_log)], heads_store or heads,
            WriterConfig(ledger_id="main", writer_id=writer_id, **config),
            inspector=PostgresInspector(event_log.pool),
        )
        if start:
            await writer.start()
        return writer, counting

    yield make, database, heads
    for event_log in logs:
        await event_log.close()


def req(stream, n=1, expected=StreamState.ANY, execution_id=None):
    return AppendRequest.create(
        stream, [NewEvent.create("happened", {"i": i}) for i in range(n)],
        expected_version=expected, context=WriteContext(execution_id=execution_id))


async def superuser(database, *statements):
    conn = await asyncpg.connect(database.admin.uri())
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_writes_are_refused_until_startup_verification_has_passed(env):
    make, _, heads = env
    writer, _ = await make(start=False)
    with pytest.raises(WriterNotVerified):
        await writer.append(req("s"))
    grant = await writer.start()
    assert grant.epoch == 1 and writer.state is WriterState.ACCEPTING
    result = await writer.append(req("s"))
    assert result.events[0].epoch == 1
    await writer.stop()
    assert heads.load("main").sequence == result.events[0].sequence
    with pytest.raises(WriterStopped, match="writer writer-a is stopped"):
        await writer.append(req("s"))


async def test_group_commit_gives_each_of_64_callers_its_own_outcome(env):
    make, _, _ = env
    writer, counting = await make()
    await writer.append(req("taken"))
    await writer.append(req("idem", execution_id="x-1"))

    def request_for(i: int):
        kind = i % 4
        if kind == 0:
            return "ok", req(f"stream-{i}", n=2, expected=StreamState.NO_STREAM)
        if kind == 1:
            return "conflict", req("taken", expected=StreamState.NO_STREAM)
        if kind == 2:  # built without validation: the database refuses it alone
            return "invalid", AppendRequest("$ledger", (NewEvent.create("x", {}),))
        return "idempotency", req("idem", n=2, execution_id="x-1")

    plan = [request_for(i) for i in range(64)]
    results = await asyncio.gather(*(writer.append(r) for _, r in plan), return_exceptions=True)
    expected_types = {"ok": AppendResult, "conflict": ConcurrencyConflict,
                      "invalid": InvalidEvent, "idempotency": IdempotencyConflict}
    for (kind, request), result in zip(plan, results, strict=True):
        assert isinstance(result, expected_types[kind]), (kind, result)
        if kind == "ok":
            assert [e.stream_id for e in result.events] == [request.stream_id] * 2
    assert len(counting.batches) < 64 / 4, counting.batches
    sequences = sorted(e.sequence for r in results if isinstance(r, AppendResult)
                       for e in r.events)
    assert sequences == list(range(sequences[0], sequences[0] + 32))
    assert (await verify_chain(counting.inner, "main")).ok
    await writer.stop()


async def test_a_few_callers_share_each_batch_rather_than_alternate(env):
    make, _, _ = env
    writer, counting = await make()

    async def caller(i: int) -> list[int]:
        return [(await writer.append(req(f"s-{i}"))).events[0].sequence for _ in range(5)]

    sequences = await asyncio.gather(*(caller(i) for i in range(OVERLAP_AT)))
    assert counting.batches == [OVERLAP_AT] * 5
    assert sorted(s for own in sequences for s in own) == list(range(2, 2 + 5 * OVERLAP_AT))
    await writer.stop()


async def test_overlapping_batches_keep_arrival_order_and_a_refused_one_fails_only_its_own(env):
    make, _, _ = env
    writer, counting = await make()
    inner_append = counting.append_batch

    async def refuse_the_second(grant, requests):
        if len(counting.batches) == 1:  # sent while the first one's callers are resolved
            counting.batches.append(len(requests))
            raise StorageError("connection lost")
        return await inner_append(grant, requests)

    counting.append_batch = refuse_the_second

    async def caller(i: int) -> tuple[AppendResult, AppendResult]:
        first = await writer.append(req(f"s-{i}"))
        return first, await writer.append(req(f"t-{i}"))

    results = await asyncio.gather(*(caller(i) for i in range(48)), return_exceptions=True)
    first, second = counting.batches[0], counting.batches[1]
    assert second > 0
    refused = [i for i, r in enumerate(results) if isinstance(r, StorageError)]
    assert refused == list(range(first, first + second))
    done = [r for r in results if isinstance(r, tuple)]
    assert len(done) == 48 - second
    # Every caller's first append, then every second one, each in arrival order.
    sequences = [r[0].events[0].sequence for r in done] + [r[1].events[0].sequence for r in done]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert (await verify_chain(counting.inner, "main")).ok
    await writer.stop()


class UnreachableChannel:
    """A halt channel whose server is down: it knows of no halt and cannot announce one."""

    async def halt_reason(self, ledger_id):
        return None

    async def announce(self, ledger_id, reason):
        raise StorageError("could not announce the halt: connection refused")


async def test_a_halted_ledger_refuses_and_fails_queued_appends(env):
    make, _, _ = env
    writer, counting = await make(channels=[UnreachableChannel()])
    await writer.append(req("s"))
    outcome = await writer.halt("operator saw something")
    # The channel never heard of it; the database's halt stops the write all the same.
    assert outcome.recorded and len(outcome.unannounced) == 1
    with pytest.raises(SystemHalted) as refused:
        await writer.append(req("s"))
    assert refused.value.reason == "operator saw something"
    head = await counting.inner.head("main")
    assert (await counting.inner.read_all("main", after=head.sequence - 1))[0].event_type \
        == "canonlog.halted"
    await writer.stop()


async def test_a_halt_between_the_check_and_the_insert_is_enforced_by_the_database(env):
    make, database, _ = env

    class HaltsRightAfterChecking(LedgerHaltChannel):
        """Says 'not halted', then another process halts the ledger before the insert."""

        async def halt_reason(self, ledger_id):
            reason = await super().halt_reason(ledger_id)
            await superuser(database, "SELECT canonlog.halt_v1('main', 'raced', 'other')")
            return reason

    event_log = await AsyncpgEventLog.connect(database.app.uri())
    writer, counting = await make(channels=[HaltsRightAfterChecking(event_log)])
    with pytest.raises(SystemHalted, match="raced"):
        await writer.append(req("s"))
    events = await counting.inner.read_all("main")
    assert events[-1].event_type == "canonlog.halted"
    assert [e.stream_id for e in events] == ["$ledger", "$ledger"]
    await writer.stop()
    await event_log.close()


async def test_unknown_halt_state_fails_closed(env):
    make, _, _ = env

    class Unreachable:
        async def halt_reason(self, ledger_id):
            from canonlog.domain.errors import HaltStateUnknown

            raise HaltStateUnknown("halt channel unreachable")

        async def announce(self, ledger_id, reason):
            return None

    writer, counting = await make(channels=[Unreachable()], start=False)
    # Start does not depend on the halt channel; every write does.
    await writer.start()
    with pytest.raises(SystemHalted, match="unreachable"):
        await writer.append(req("s"))
    assert (await counting.inner.head("main")).sequence == 1
    await writer.stop()


async def test_another_writer_cannot_take_a_held_grant(env):
    make, _, _ = env
    first, _ = await make("writer-a")
    with pytest.raises(LeaseUnavailable):
        await make("writer-b")
    await first.stop()
    # The lease is free now, but the grant is still writer-a's: no ceremony, no writes.
    second, _ = await make("writer-b", start=False)
    with pytest.raises(GrantUnavailable, match="ceremony"):
        await second.start()
    with pytest.raises(WriterNotVerified):
        await second.append(req("s"))


async def test_a_clean_hand_over_lets_another_writer_take_the_grant(env):
    make, _, _ = env
    first, _ = await make("writer-a")
    await first.append(req("s"))
    await first.stop(hand_over=True)
    second, counting = await make("writer-b")
    assert second.grant.epoch == 2
    await second.append(req("s"))
    types = [e.event_type for e in await counting.inner.read_stream("main", "$ledger")]
    assert types == ["canonlog.writer_granted", "canonlog.writer_released",
                     "canonlog.writer_granted"]
    await second.stop()


async def test_a_restarted_writer_fences_its_former_self(env):
    make, _, _ = env
    old, old_log = await make("writer-a", ttl=0.2, lease_renew_interval=60)
    await asyncio.sleep(0.25)  # the old lease expires unrenewed (as if the process paused)
    new, _ = await make("writer-a")
    assert new.grant.epoch == old.grant.epoch + 1
    # The old instance's own deadline check refuses first...
    with pytest.raises(WriterLeaseLost):
        await old.append(req("s"))
    # ...and the database refuses the old epoch even if a write slips through.
    with pytest.raises(StaleWriter):
        await append_one(old_log.inner, old.grant, req("s"))
    await new.append(req("s"))
    await new.stop()


async def test_startup_refuses_a_tampered_tail_and_halts(env):
    make, database, _ = env
    writer, counting = await make()
    for i in range(5):
        await writer.append(req(f"s{i}"))
    await writer.stop()
    await superuser(
        database, "ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_update",
        "UPDATE canonlog.events SET payload = convert_to('{\"i\":99}', 'UTF8') WHERE seq = 4",
        "ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_update")
    restarted, _ = await make(start=False)
    with pytest.raises(WriterInconsistency, match="sequence 4"):
        await restarted.start()
    state = await counting.inner.ledger_state("main")
    assert state.halted and "sequence 4" in state.halt_reason


async def test_startup_refuses_a_head_behind_the_last_known_head(env):
    make, database, heads = env
    writer, counting = await make()
    for i in range(5):
        await writer.append(req(f"s{i}"))
    await writer.stop()
    known = heads.load("main")
    assert known == await counting.inner.head("main")
    await superuser(
        database, "ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_delete",
        f"DELETE FROM canonlog.events WHERE seq > {known.sequence - 2}",
        "ALTER TABLE canonlog.events ENABLE ALWAYS TRIGGER events_refuse_delete")
    restarted, _ = await make(start=False)
    with pytest.raises(WriterInconsistency) as refused:
        await restarted.start()
    assert f"is behind the writer's last known head {known.sequence}" in str(refused.value)
    assert (await counting.inner.ledger_state("main")).halted


async def test_startup_refuses_a_disabled_trigger(env):
    make, database, _ = env
    writer, _ = await make()
    await writer.stop()
    await superuser(database, "ALTER TABLE canonlog.events DISABLE TRIGGER events_refuse_delete")
    restarted, _ = await make(start=False)
    with pytest.raises(WriterInconsistency, match=r"events_refuse_delete .* is disabled"):
        await restarted.start()


async def test_startup_refuses_synchronous_commit_off(env):
    make, database, _ = env
    await superuser(database, f'ALTER DATABASE "{database.app.database}" '
                              "SET synchronous_commit = off")
    writer, _ = await make(start=False)
    with pytest.raises(UnsafeDurability, match="synchronous_commit is off"):
        await writer.start()


async def test_losing_the_lease_fails_queued_appends_and_recovery_needs_a_new_lease(env):
    make, _, _ = env
    writer, _ = await make(ttl=0.3, lease_renew_interval=0.05)
    await writer.append(req("s"))
    # Someone else takes the lease (the old one was force-expired).
    writer._lease._registry["main"] = ("intruder", float("inf"))
    for _ in range(50):
        if writer.state is WriterState.LEASE_LOST:
            break
        await asyncio.sleep(0.02)
    assert writer.state is WriterState.LEASE_LOST
    with pytest.raises(WriterLeaseLost):
        await writer.append(req("s"))
    del writer._lease._registry["main"]
    for _ in range(100):
        if writer.state is WriterState.ACCEPTING:
            break
        await asyncio.sleep(0.02)
    assert writer.state is WriterState.ACCEPTING
    assert writer.grant.epoch == 2
    await writer.append(req("s"))
    await writer.stop()


async def test_subscribe_delivers_history_then_new_events_in_order(env):
    make, database, _ = env
    writer, counting = await make()
    from canonlog.infrastructure.postgres.notifier import PostgresNotifier

    notifier = PostgresNotifier(database.app.uri())
    client = LedgerClient(writer, counting.inner, "main", notifier=notifier)
    await client.append("s", [NewEvent.create("a", {})])
    seen = []

    async def consume():
        async for event in client.subscribe(after=0, poll_interval=5.0):
            seen.append(event.sequence)
            if len(seen) == 5:
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for _ in range(3):
        await client.append("s", [NewEvent.create("b", {})])
    # Woken by NOTIFY well before the 5 s poll interval.
    await asyncio.wait_for(consumer, 2.0)
    assert seen == [1, 2, 3, 4, 5]
    await notifier.close()
    await writer.stop()


async def test_subscribe_survives_lost_notifications_by_polling(env):
    make, _, _ = env
    writer, counting = await make()
    client = LedgerClient(writer, counting.inner, "main")  # no notifier: polling only
    seen = []

    async def consume():
        async for event in client.subscribe(after=1, poll_interval=0.05):
            seen.append(event.sequence)
            if len(seen) == 2:
                return

    consumer = asyncio.create_task(consume())
    await client.append("s", [NewEvent.create("a", {})])
    await client.append("s", [NewEvent.create("a", {})])
    await asyncio.wait_for(consumer, 2.0)
    assert seen == [2, 3]
    await writer.stop()


async def test_a_writer_fenced_by_a_failover_stops_for_good(env):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from canonlog.application import ceremonies
    from tests.support.ceremony import policy_of

    make, database, _ = env
    writer, counting = await make("writer-a", lease_renew_interval=0.05)
    log = counting.inner
    witness = Ed25519PrivateKey.generate()
    admin = await AsyncpgEventLog.connect(database.admin.uri())
    try:
        await admin.establish_policy("main", policy_of(("w-1", "witness-1", witness)), "admin")
        ceremony = await ceremonies.propose_failover(admin, "main", "writer-b", "ops")
        await ceremonies.approve(admin, "main", ceremony.proposal_id, "w-1", "ops",
                                 private_key=witness)
        await ceremonies.execute_failover(admin, "main", ceremony.proposal_id, "ops")
    finally:
        await admin.close()
    with pytest.raises(StaleWriter):
        await writer.append(req("s"))
    for _ in range(100):
        if writer.state is WriterState.STOPPED:
            break
        await asyncio.sleep(0.02)
    assert writer.state is WriterState.STOPPED
    with pytest.raises(WriterStopped, match="writer writer-a is stopped"):
        await writer.append(req("s"))
    assert {e.writer_id for e in await log.read_all("main") if e.stream_id == "s"} == set()
