"""The failover ceremony racing appends in flight: the promotion and the append take the
same ledger lock, so every event of the old epoch commits before the promotion, none after."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import canonlog
from canonlog.application import ceremonies
from canonlog.application.client import LedgerClient
from canonlog.application.halting import LedgerHaltChannel
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.infrastructure.head_store import MemoryHeadStore
from canonlog.infrastructure.memory import InMemoryLease
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.faults.harness import AppendLoad, audit
from tests.support.ceremony import policy_of


@pytest.mark.parametrize("acks_before", [5, 40, 120])
async def test_no_event_of_the_old_epoch_commits_after_the_promotion(database, acks_before):
    event_log = await AsyncpgEventLog.connect(database.app.uri(), max_size=6)
    admin = await AsyncpgEventLog.connect(database.admin.uri(), max_size=2)
    writer = EventWriterService(
        event_log, InMemoryLease("main", "writer-a", ttl=30.0, registry={}),
        [LedgerHaltChannel(event_log)], MemoryHeadStore(),
        WriterConfig(ledger_id="main", writer_id="writer-a", append_timeout=10.0,
                     lease_renew_interval=0.05),
    )
    try:
        old_epoch = (await writer.start()).epoch
        witness = Ed25519PrivateKey.generate()
        await admin.establish_policy("main", policy_of(("w-1", "witness-1", witness)), "admin")
        proposal = await ceremonies.propose_failover(admin, "main", "writer-b", "ops")
        await ceremonies.approve(admin, "main", proposal.proposal_id, "w-1", "ops",
                                 private_key=witness)
        load = AppendLoad(LedgerClient(writer, event_log, "main"), workers=16,
                          give_up_on=(canonlog.StaleWriter, canonlog.WriterStopped,
                                      canonlog.WriterLeaseLost))
        load.start()
        await load.wait_for_acks(acks_before)
        grant = await ceremonies.execute_failover(admin, "main", proposal.proposal_id, "ops")
        await load.stop(within=30)
        events = await event_log.read_all("main", limit=100_000)
    finally:
        await writer.stop()
        await event_log.close()
        await admin.close()
    (promotion,) = [e for e in events if e.event_type == "canonlog.writer_promoted"]
    assert grant.epoch == promotion.epoch and grant.epoch > old_epoch
    old = [e for e in events if e.epoch == old_epoch and e.stream_id != "$ledger"]
    assert old and all(e.sequence < promotion.sequence for e in old)
    assert all(e.epoch == grant.epoch for e in events if e.sequence > promotion.sequence)
    assert all(sequence < promotion.sequence for sequence, _ in load.acked.values())
    assert load.abandoned, "no append was in flight when the grant moved"
    result = await audit(database.admin.uri(), database.app.uri(), load.acked)
    assert result.clean, result
