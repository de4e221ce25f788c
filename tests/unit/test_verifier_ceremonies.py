"""The verifier checks promotions, resumes and policy changes against the governance
policy it replays from the chain."""

from __future__ import annotations

import json
from dataclasses import replace

from canonlog.application import ceremonies
from canonlog.application.chain_verification import verify_events
from canonlog.infrastructure.memory import MemoryEventLog
from tests.support.ceremony import policy_of
from tests.support.chains import rechain
from tests.support.keys import seeded_key

WITNESSES = [seeded_key(n) for n in (1, 2, 3)]


POLICY = policy_of(*((f"w-{n}", f"witness-{n}", key) for n, key in enumerate(WITNESSES)),
                   threshold=2)


async def promoted_ledger():
    log = MemoryEventLog()
    await log.establish_policy("main", POLICY, "admin")
    await log.acquire_grant("main", "writer-a")
    ceremony = await ceremonies.propose_failover(log, "main", "writer-b", "ops")
    for n, key in enumerate(WITNESSES[:2]):
        await ceremonies.approve(log, "main", ceremony.proposal_id, f"w-{n}", "ops",
                                 private_key=key)
    await ceremonies.execute_failover(log, "main", ceremony.proposal_id, "ops")
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


def _with_payload(event, data):
    return replace(event, payload=json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


async def test_a_promotion_below_the_policys_threshold_is_caught_whatever_it_records():
    events = await promoted_ledger()
    promotion = events[-1]
    data = json.loads(promotion.payload)
    data["approvals"], data["threshold"] = data["approvals"][:1], 1
    report = verify_events(rechain([*events[:-1], _with_payload(promotion, data)]), "main")
    assert report.breaks[0].sequence == promotion.sequence
    assert "the policy in force needs 2" in report.breaks[0].message


async def test_a_witness_key_or_a_second_policy_outside_a_ceremony_is_caught():
    events = await promoted_ledger()
    last = events[-1]
    key_added = replace(last, sequence=last.sequence + 1, stream_version=last.stream_version + 1,
                        event_type="canonlog.key_added", payload=json.dumps({
                            "key_id": "w-mallory", "purpose": "witness", "owner_id": "mallory",
                            "public_key": "11" * 32, "actor": "root"}).encode())
    established = replace(last, sequence=last.sequence + 2,
                          stream_version=last.stream_version + 2,
                          event_type="canonlog.policy_established", payload=json.dumps({
                              "kind": "genesis", "policy": POLICY.document(),
                              "actor": "root"}).encode())
    report = verify_events(rechain([*events, key_added, established]), "main")
    assert [(b.sequence, b.kind) for b in report.breaks] == [
        (key_added.sequence, "bad_ceremony"), (established.sequence, "bad_ceremony")]


async def test_a_policy_change_is_checked_against_the_policy_it_replaces():
    log = MemoryEventLog()
    await log.establish_policy("main", POLICY, "admin")
    new = policy_of(("w-0", "witness-0", WITNESSES[0]), ("w-9", "witness-9", seeded_key(9)),
                    threshold=1)
    ceremony = await ceremonies.propose_policy(log, "main", new, "ops")
    for n in (0, 1):
        await ceremonies.approve(log, "main", ceremony.proposal_id, f"w-{n}", "ops",
                                 private_key=WITNESSES[n])
    await ceremonies.execute_policy_change(log, "main", ceremony.proposal_id, "ops")
    events = await log.read_all("main")
    assert verify_events(events, "main").ok
    assert [p.policy for p in await log.policies("main")] == [POLICY, new]
    change = events[-1]
    data = json.loads(change.payload)
    data["approvals"] = data["approvals"][:1]
    report = verify_events(rechain([*events[:-1], _with_payload(change, data)]), "main")
    assert [(b.sequence, b.kind) for b in report.breaks] == [(change.sequence, "bad_ceremony")]
