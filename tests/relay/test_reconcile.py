"""Reconciliation finds rows missing, extra or altered at a destination by narrowing
digests, and re-delivers the missing ones."""

from __future__ import annotations

import asyncpg
import pytest

from canonlog.application.idempotency import IdempotencyService
from canonlog.application.reconciliation import ReconcileConfig, reconcile
from canonlog.application.relay import RelayConsumer
from canonlog.domain.relay import ConsumerSettings
from canonlog.infrastructure.destinations import open_destination
from canonlog.infrastructure.postgres.idempotency import PostgresIdempotencyStore
from tests.relay.conftest import LEDGER
from tests.relay.test_consumer import FAST, Flaky, drain

SMALL = ReconcileConfig(chunk=100, leaf=8)


@pytest.fixture
async def projection(projection_dsn):
    destination = await open_destination(projection_dsn)
    yield destination
    await destination.close()


async def test_a_complete_destination_reconciles_clean(ledger, store, projection):
    await ledger.append(150)
    await store.register(ConsumerSettings("proj", LEDGER))
    consumer = RelayConsumer("proj", ledger.log, store, projection, config=FAST)
    while await consumer.step():
        pass
    report = await reconcile("proj", ledger.log, store, projection, config=SMALL)
    assert report.clean and report.checked_through == 151 and report.redelivered == 0


async def test_deleted_altered_and_extra_rows_are_found_and_the_missing_redelivered(
        ledger, store, projection, projection_dsn):
    await ledger.append(150)
    await store.register(ConsumerSettings("proj", LEDGER))
    consumer = RelayConsumer("proj", ledger.log, store, projection, config=FAST)
    while await consumer.step():
        pass
    conn = await asyncpg.connect(projection_dsn)
    try:
        await conn.execute("DELETE FROM canonlog_projection WHERE seq IN (7, 120)")
        await conn.execute("UPDATE canonlog_projection SET hash = sha256(hash) WHERE seq = 42")
        await conn.execute("INSERT INTO canonlog_projection SELECT ledger_id, 999, hash, "
                           "gen_random_uuid(), stream_id, 99, event_type, payload, metadata, "
                           "recorded_at FROM canonlog_projection WHERE seq = 5")
        report = await reconcile("proj", ledger.log, store, projection, config=SMALL)
        assert (report.missing, report.altered, report.extra) == ((7, 120), (42,), (999,))
        assert report.redelivered == 2
        assert await conn.fetchval("SELECT count(*) FROM canonlog_projection "
                                   "WHERE seq IN (7, 120)") == 2
    finally:
        await conn.close()
    again = await reconcile("proj", ledger.log, store, projection, redeliver=False,
                            config=SMALL)
    assert (again.missing, again.altered, again.extra) == ((), (42,), (999,))


async def test_pending_events_and_dead_letters_are_not_reported_missing(
        database, ledger, store, projection):
    await ledger.append(20)
    await store.register(ConsumerSettings("proj", LEDGER, max_attempts=1))
    await drain(RelayConsumer("proj", ledger.log, store, _Refusing(projection, 9), config=FAST))
    await ledger.append(5)  # pending: after the cursor
    pool = await asyncpg.create_pool(database.app.uri(), min_size=1, max_size=2)
    try:
        service = IdempotencyService(PostgresIdempotencyStore(pool))
        await service.store("gone", {"n": 1}, ttl=0.001)
        report = await reconcile("proj", ledger.log, store, projection, idempotency=service,
                                 config=SMALL)
    finally:
        await pool.close()
    assert report.clean and report.checked_through == 26
    assert report.expired_idempotency_records == 1


class _Refusing(Flaky):
    """Delivers to a real destination, refusing one sequence."""

    def __init__(self, inner, refuse: int) -> None:
        super().__init__(refuse=[refuse])
        self.inner = inner

    async def deliver(self, events):
        await super().deliver(events)
        await self.inner.deliver(events)
