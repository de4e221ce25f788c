"""The verifier checks promotions and resumes against witness keys learnt from the chain."""

from __future__ import annotations

import json
from dataclasses import replace

from canonlog.application import ceremonies
from canonlog.application.verifier import verify_events
from canonlog.infrastructure.keyfiles import public_bytes
from canonlog.infrastructure.memory import MemoryEventLog
from tests.support.chains import rechain
from tests.support.keys import seeded_key

WITNESSES = [seeded_key(n) for n in (1, 2, 3)]


async def promoted_ledger():
    log = MemoryEventLog()
    await log.acquire_grant("main", "writer-a")
    for n, key in enumerate(WITNESSES):
        await log.add_key("main", f"w-{n}", "witness", f"witness-{n}", public_bytes(key), "ops")
    ceremony = await ceremonies.propose_failover(log, "main", "writer-b", "ops")
    for n, key in enumerate(WITNESSES[:2]):
        await ceremonies.approve(log, "main", ceremony.proposal_id, f"w-{n}", "ops",
                                 private_key=key)
    await ceremonies.execute_failover(log, "main", ceremony.proposal_id, 2, "ops")
    return await log.read_all("main")


async def test_a_witnessed_promotion_verifies():
    assert verify_events(await promoted_ledger(), "main").ok


async def test_a_promotion_with_a_forged_signature_is_caught_after_recomputed_hashes():
    events = await promoted_ledger()
    promotion = events[-1]
    assert promotion.event_type == "canonlog.writer_promoted"
    data = json.loads(promotion.payload)
    data["approvals"][1]["signature"] = WITNESSES[2].sign(b"something else").hex()
    forged = rechain([*events[:-1], replace(
        promotion, payload=json.dumps(data, sort_keys=True, separators=(",", ":")).encode())])
    report = verify_events(forged, "main")
    assert [(b.sequence, b.kind) for b in report.breaks] == \
        [(promotion.sequence, "bad_ceremony")] * len(report.breaks)
    assert report.breaks


async def test_a_promotion_to_another_writer_than_the_witnesses_signed_is_caught():
    events = await promoted_ledger()
    promotion = events[-1]
    data = json.loads(promotion.payload)
    data["writer_id"] = "writer-mallory"
    forged = rechain([*events[:-1], replace(
        promotion, payload=json.dumps(data, sort_keys=True, separators=(",", ":")).encode())])
    kinds = {b.kind for b in verify_events(forged, "main").breaks}
    assert kinds == {"bad_ceremony"}


async def test_a_resume_without_the_ceremony_is_reported():
    log = MemoryEventLog()
    await log.acquire_grant("main", "writer-a")
    await log.halt("main", "incident", "ops")
    events = await log.read_all("main")
    halt = events[-1]
    # A superuser can call the internal resume directly; the chain then shows it.
    bare = replace(halt, sequence=halt.sequence + 1, stream_version=halt.stream_version + 1,
                   event_type="canonlog.resumed",
                   payload=b'{"actor":"root","evidence":{},"halt_reason":"incident"}')
    forged = rechain([*events, bare])
    (problem,) = verify_events(forged, "main").breaks
    assert (problem.sequence, problem.kind) == (bare.sequence, "unwitnessed")
