"""A consumer's durable cursor: in order, at least once, moved only after the
destination confirmed, stopped when the chain no longer holds its cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from canonlog.application.relay import RelayConfig, RelayConsumer, consumer_status
from canonlog.domain.errors import ConsumerStopped, DestinationError, HistoryRewritten
from canonlog.domain.events import RecordedEvent
from canonlog.domain.relay import Backoff, ConsumerSettings
from canonlog.infrastructure.destinations.jsonl import JsonLinesDestination
from canonlog.infrastructure.postgres.relay_store import AdvisoryConsumerLease
from tests.relay.conftest import LEDGER

FAST = RelayConfig(batch_size=50, poll_interval=0.05, backoff=Backoff(base=0.01, cap=0.02))


class Flaky:
    """A destination that refuses the sequences in `refuse` (each up to `times` times),
    and otherwise records what it was given, keyed by sequence like a real one."""

    def __init__(self, refuse: Sequence[int] = (), times: int = 10**9) -> None:
        self.refuse = {seq: times for seq in refuse}
        self.held: dict[int, bytes] = {}
        self.calls: list[list[int]] = []

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        self.calls.append([e.sequence for e in events])
        for event in events:
            if self.refuse.get(event.sequence, 0) > 0:
                self.refuse[event.sequence] -= 1
                raise DestinationError(f"refused {event.sequence}")
        for event in events:
            self.held[event.sequence] = event.hash

    async def close(self) -> None:
        pass


async def drain(consumer: RelayConsumer, rounds: int = 0) -> None:
    """Delivers until caught up (rounds > 0: at most that many steps)."""
    if not rounds:
        await consumer.drain()
        return
    for _ in range(rounds):
        await consumer.step()


async def test_a_consumer_delivers_the_chain_in_order_and_moves_its_cursor(ledger, store, tmp_path):
    head = await ledger.append(120)
    await store.register(ConsumerSettings("file", LEDGER))
    destination = JsonLinesDestination(tmp_path / "out.jsonl")
    consumer = RelayConsumer("file", ledger.log, store, destination, config=FAST)
    while await consumer.step():
        pass
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == head
    state = await store.consumer("file")
    events = await ledger.log.read_all(LEDGER, after=head - 1)
    assert (state.cursor_seq, state.cursor_hash) == (head, events[0].hash)
    status = await consumer_status("file", ledger.log, store)
    assert (status.lag_events, status.failing, status.dead_letters) == (0, 0, 0)


async def test_redelivery_after_a_crash_changes_nothing_at_the_destination(ledger, store, tmp_path):
    """The destination confirmed, the cursor did not move: the events come again and
    the destination, keyed by sequence, holds each once."""
    await ledger.append(10)
    await store.register(ConsumerSettings("file", LEDGER))
    destination = JsonLinesDestination(tmp_path / "out.jsonl")
    events = await ledger.log.read_all(LEDGER)
    await destination.deliver(events[:7])  # confirmed; the relay died before advance()
    consumer = RelayConsumer("file", ledger.log, store,
                             JsonLinesDestination(tmp_path / "out.jsonl"), config=FAST)
    while await consumer.step():
        pass
    sequences = [int(line.split('"sequence":')[1].split(",")[0])
                 for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(sequences) == [e.sequence for e in events]
    assert len(set(sequences)) == len(sequences)


async def test_a_failing_event_is_retried_then_dead_lettered_and_the_rest_flow(ledger, store):
    await ledger.append(8)
    await store.register(ConsumerSettings("flaky", LEDGER, "dead_letter", max_attempts=3))
    destination = Flaky(refuse=[5])
    consumer = RelayConsumer("flaky", ledger.log, store, destination, config=FAST)
    await drain(consumer)
    assert sorted(destination.held) == [s for s in range(1, 10) if s != 5]
    (letter,) = await store.failures("flaky", dead_letters_only=True)
    assert (letter.sequence, letter.attempts, letter.status) == (5, 3, "dead_letter")
    assert "refused 5" in letter.last_error
    assert (await store.consumer("flaky")).cursor_seq == 9
    # Retried one at a time once the batch failed, so only event 5 is charged.
    assert [call for call in destination.calls if 5 in call and len(call) == 1] == [[5]] * 3


async def test_a_poison_event_stops_a_consumer_whose_policy_is_stop(ledger, store):
    await ledger.append(4)
    await store.register(ConsumerSettings("strict", LEDGER, "stop", max_attempts=2))
    consumer = RelayConsumer("strict", ledger.log, store, Flaky(refuse=[3]), config=FAST)
    with pytest.raises(ConsumerStopped, match="sequence 3 failed 2 times"):
        await drain(consumer)
    state = await store.consumer("strict")
    assert state.cursor_seq == 2 and "sequence 3" in (state.stopped or "")
    await store.set_paused("strict", False)  # resume clears the stop
    healed = RelayConsumer("strict", ledger.log, store, Flaky(), config=FAST)
    await drain(healed, rounds=3)
    assert (await store.consumer("strict")).cursor_seq == 5
    assert await store.failures("strict") == []


async def test_a_transient_failure_is_retried_until_synced(ledger, store):
    await ledger.append(3)
    await store.register(ConsumerSettings("t", LEDGER, "stop", max_attempts=5))
    destination = Flaky(refuse=[2], times=2)
    await drain(RelayConsumer("t", ledger.log, store, destination, config=FAST))
    assert sorted(destination.held) == [1, 2, 3, 4]
    assert await store.failures("t") == []


async def test_a_paused_consumer_delivers_nothing_until_resumed(ledger, store):
    await ledger.append(3)
    await store.register(ConsumerSettings("p", LEDGER))
    await store.set_paused("p", True)
    destination = Flaky()
    consumer = RelayConsumer("p", ledger.log, store, destination, config=FAST)
    assert await consumer.step() == 0 and destination.held == {}
    await store.set_paused("p", False)
    assert await consumer.step() == 4


async def test_a_cursor_whose_hash_the_chain_no_longer_holds_stops_the_consumer(
        database, ledger, store):
    await ledger.append(5)
    await store.register(ConsumerSettings("c", LEDGER))
    consumer = RelayConsumer("c", ledger.log, store, Flaky(), config=FAST)
    await consumer.step()
    # A superuser rewrites history: the trigger is bypassed and event 6's hash changes.
    admin = await asyncpg.connect(database.admin.uri())
    try:
        await admin.execute("SET session_replication_role = replica")
        await admin.execute("ALTER TABLE canonlog.events DISABLE TRIGGER USER")
        await admin.execute("UPDATE canonlog.events SET hash = sha256(hash) "
                            "WHERE ledger_id = $1 AND seq = 6", LEDGER)
    finally:
        await admin.close()
    await ledger.append(1)
    with pytest.raises(HistoryRewritten, match="history rewritten at sequence 6"):
        await consumer.step()
    assert (await store.consumer("c")).stopped == "history rewritten at sequence 6"


async def test_two_relays_for_one_consumer_one_runs_the_other_waits(database, ledger, store):
    await ledger.append(3)
    await store.register(ConsumerSettings("leased", LEDGER))
    first, second = AdvisoryConsumerLease(database.app.uri()), \
        AdvisoryConsumerLease(database.app.uri(), poll_interval=0.02)
    try:
        assert await first.acquire("leased")
        assert not await second.acquire("leased", wait=False)
        waiting = asyncio.ensure_future(second.acquire("leased"))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await first.release()
        assert await asyncio.wait_for(waiting, 5)
        assert await second.held()
    finally:
        await first.release()
        await second.release()


async def test_run_wakes_on_new_events_and_stops_cleanly(database, ledger, store):
    from canonlog.infrastructure.postgres.notifier import PostgresNotifier
    await store.register(ConsumerSettings("live", LEDGER))
    destination = Flaky()
    notifier = PostgresNotifier(database.app.uri())
    await notifier.wait(LEDGER, 10**9, 0.01)  # listening before anything is appended
    consumer = RelayConsumer("live", ledger.log, store, destination, notifier=notifier,
                             config=RelayConfig(poll_interval=5.0))
    stop = asyncio.Event()
    task = asyncio.ensure_future(consumer.run(AdvisoryConsumerLease(database.app.uri()), stop))
    try:
        head = await ledger.append(3)
        for _ in range(400):
            if head in destination.held:
                break
            await asyncio.sleep(0.01)
        assert head in destination.held  # well before the 5 s poll
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await notifier.close()
