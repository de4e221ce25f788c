"""verify_ledger: the chain recomputed from the start the caller chose, the store held
to every trusted head, and the report saying which start ran and what it covered."""

from __future__ import annotations

import pytest

from canonlog.application.ports import append_one
from canonlog.application.verification import UNPROTECTED, verify_exported, verify_ledger
from canonlog.domain.events import GENESIS_HASH, Head
from canonlog.infrastructure.memory import MemoryEventLog
from tests.support.ledgers import request


@pytest.fixture
async def ledger() -> tuple[MemoryEventLog, dict[int, bytes]]:
    """A ledger of 10 events (a grant and 9 appends) and the hash at every sequence."""
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "w")
    for i in range(9):
        await append_one(log, grant, request("s", {"i": i}))
    return log, {e.sequence: e.hash for e in await log.read_all("main")}


async def test_by_default_every_hash_is_recomputed_and_checkpoints_only_compared(ledger):
    log, at = ledger
    report = await verify_ledger(log, "main", trusted=[Head("main", 6, at[6])])
    assert report.ok and report.ledger_id == "main"
    assert report.coverage.mode == "genesis"
    assert report.coverage.start == Head("main", 0, GENESIS_HASH)
    assert (report.coverage.end, report.coverage.recomputed) == (10, 10)
    assert report.chain.events_checked == 10
    assert report.checkpoints.matching == (Head("main", 6, at[6]),)
    assert report.coverage.uncovered == 4


async def test_incrementally_from_the_newest_checkpoint_the_store_still_matches(ledger):
    log, at = ledger
    trusted = [Head("main", 3, at[3]), Head("main", 6, at[6]), Head("main", 8, bytes(32))]
    report = await verify_ledger(log, "main", trusted=trusted, from_genesis=False)
    assert report.coverage.mode == "checkpoint"
    assert report.coverage.start == Head("main", 6, at[6])
    assert report.chain.ok and report.chain.events_checked == 4
    assert not report.ok and [m.kind for m in report.checkpoints.mismatches] == ["hash"]
    assert report.coverage.uncovered == 2

    until = await verify_ledger(log, "main", trusted=trusted, from_genesis=False, until=5)
    assert until.coverage.start == Head("main", 3, at[3])
    assert (until.coverage.end, until.chain.events_checked) == (5, 2)

    none_matches = await verify_ledger(log, "main", trusted=[Head("main", 4, bytes(32))],
                                       from_genesis=False)
    assert none_matches.coverage.mode == "genesis" and none_matches.chain.events_checked == 10


async def test_from_an_anchor_the_first_event_must_link_to_it(ledger):
    log, at = ledger
    report = await verify_ledger(log, "main", anchor=Head("main", 7, at[7]))
    assert report.ok and report.coverage.mode == "anchor"
    assert report.chain.events_checked == 3
    forked = await verify_ledger(log, "main", anchor=Head("main", 7, bytes(32)), until=9)
    assert forked.chain.first_break is not None
    assert (forked.chain.first_break.sequence, forked.chain.first_break.kind) == (
        8, "prev_hash_mismatch")
    assert forked.coverage.end == 9


async def test_a_tail_is_recomputed_from_the_stores_own_hash_before_it(ledger):
    log, at = ledger
    report = await verify_ledger(log, "main", tail=4)
    assert report.ok and report.coverage.mode == "tail"
    assert report.coverage.start == Head("main", 6, at[6])
    assert report.coverage.recomputed == 4
    longer = await verify_ledger(log, "main", tail=1000, until=8)
    assert longer.coverage.mode == "genesis" and longer.coverage.end == 8
    with pytest.raises(ValueError, match="an anchor or a tail"):
        await verify_ledger(log, "main", tail=4, anchor=Head("main", 6, at[6]))


async def test_the_report_names_what_it_did_not_recompute(ledger):
    log, at = ledger
    full = await verify_ledger(log, "main", trusted=[Head("main", 6, at[6])])
    assert full.coverage.not_recomputed() is None
    incremental = await verify_ledger(log, "main", trusted=[Head("main", 6, at[6])],
                                      from_genesis=False)
    assert incremental.coverage.not_recomputed() == (
        "sequences 1..6 were not recomputed: checkpoint #6 vouches only for the hash stored "
        "there, so an edit or a deletion before it is not detected")
    tail = await verify_ledger(log, "main", tail=4)
    assert tail.coverage.not_recomputed() == (
        "sequences 1..6 were not recomputed: only the last 4 events were recomputed, linked "
        "to the store's own hash at #6")


async def test_tamper_evidence_and_missing_required_checkpoints_fail_the_verdict(ledger):
    log, at = ledger
    bare = await verify_ledger(log, "main")
    assert bare.ok and bare.unprotected and bare.problems() == []
    required = await verify_ledger(log, "main", require_checkpoints=True)
    assert not required.ok
    assert required.problems() == [f"checkpoints are required but none is trusted; {UNPROTECTED}"]
    covered = await verify_ledger(log, "main", trusted=[Head("main", 6, at[6])],
                                  require_checkpoints=True)
    assert covered.ok and not covered.unprotected
    forged = await verify_ledger(log, "main", trusted=[Head("main", 6, at[6])],
                                 tamper_evidence=["checkpoint x: signature by k does not verify"])
    assert not forged.ok
    assert forged.problems() == ["tamper evidence: checkpoint x: signature by k does not verify"]


async def test_an_export_is_compared_with_every_trusted_head(ledger):
    log, at = ledger
    events = await log.read_all("main")
    whole = verify_exported(events, "main", trusted=[Head("main", 6, at[6])])
    assert whole.ok and whole.coverage.mode == "genesis" and whole.coverage.uncovered == 4
    cut = verify_exported(events[:5], "main", trusted=[Head("main", 6, at[6])])
    assert cut.chain.ok and not cut.ok
    assert [m.kind for m in cut.checkpoints.mismatches] == ["behind"]
    assert cut.checkpoints.mismatches[0].message.startswith(
        f"export head #5 {at[5].hex()} is behind checkpoint #6")
    other = verify_exported(events, "main", trusted=[Head("main", 6, bytes(32))])
    assert [m.kind for m in other.checkpoints.mismatches] == ["hash"]
