"""The ceremony contract: every adapter records, refuses and executes ceremonies alike,
under the ledger's governance policy.

In PostgreSQL each step runs as the login whose step it is: the administrator
establishes the policy, the writer holds the grant and appends, the operator runs
the ceremony steps. The in-memory log is all three."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from canonlog.application.ports import EventLog, append_one
from canonlog.domain.ceremony import statement
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    CeremonyNotFound,
    GrantUnavailable,
    InvalidEvent,
    LedgerNotFound,
    NoGovernancePolicy,
    PolicyAlreadyEstablished,
    StaleWriter,
    SystemHalted,
    ThresholdNotMet,
    WaitingPeriodNotOver,
)
from canonlog.domain.events import WriterGrant
from canonlog.domain.governance import GovernancePolicy, policy_statement_v1
from canonlog.domain.hashing import event_hash_v1
from tests.support.ceremony import policy_of
from tests.support.keys import public_bytes, seeded_key
from tests.support.ledgers import request

#: key id -> (owner, seed); alice holds two keys, and each key is a witness of its own.
WITNESSES = {"w-alice": ("alice", 11), "w-alice-2": ("alice", 12), "w-bob": ("bob", 13),
             "w-carol": ("carol", 14)}
POLICY = policy_of(*((k, o, seeded_key(seed)) for k, (o, seed) in WITNESSES.items()),
                   threshold=2)
async def witnessed_ledger(log: EventLog, policy: GovernancePolicy = POLICY,
                           ledger_id: str = "main") -> WriterGrant:
    await log.establish_policy(ledger_id, policy, "admin")
    grant = await log.acquire_grant(ledger_id, "writer-a")
    await log.add_key(ledger_id, "agent-key", "agent", "agent-7", public_bytes(seeded_key(20)),
                      "ops")
    await append_one(log, grant, request("s"))
    return grant


async def sign(log: EventLog, proposal_id: int, key_id: str, seed: int | None = None) -> int:
    (ceremony,) = await log.ceremonies("main", proposal_id)
    signature = seeded_key(seed or WITNESSES[key_id][1]).sign(statement(ceremony))
    return await log.approve("main", proposal_id, key_id, signature, "ops")


async def test_a_failover_proposal_is_a_chained_event_holding_the_grant_and_head(event_log):
    await witnessed_ledger(event_log)
    head = await event_log.head("main")
    assert await event_log.propose_failover("main", "writer-b", "ops") == 1
    assert await event_log.propose_failover("main", "writer-c", "ops") == 2
    first, second = await event_log.ceremonies("main")
    assert (first.kind, first.status, first.writer_id, first.epoch) == ("failover", "open",
                                                                         "writer-a", 1)
    assert (first.target_writer_id, first.head_sequence, first.head_hash) == (
        "writer-b", head.sequence, head.hash)
    assert first.approvals == () and first.closed_seq is None
    assert second.head_sequence == head.sequence + 1
    proposed = (await event_log.read_all("main", after=head.sequence))[0]
    assert proposed.sequence == first.proposed_seq
    assert proposed.recorded_at == first.proposed_at
    assert proposed.event_type == "canonlog.ceremony_proposed"
    assert json.loads(proposed.payload) == {
        "proposal_id": 1, "kind": "failover", "target_writer_id": "writer-b",
        "writer_id": "writer-a", "epoch": 1, "head_sequence": head.sequence,
        "head_hash": head.hash.hex(), "actor": "ops"}
    assert proposed.hash == event_hash_v1(proposed)


async def test_a_failover_needs_a_grant_held_by_another_writer(event_log):
    grant = await witnessed_ledger(event_log)
    with pytest.raises(LedgerNotFound):
        await event_log.propose_failover("nowhere", "writer-b", "ops")
    with pytest.raises(CeremonyNotApplicable, match="writer-a already holds the grant"):
        await event_log.propose_failover("main", "writer-a", "ops")
    with pytest.raises(InvalidEvent):
        await event_log.propose_failover("main", "", "ops")
    with pytest.raises(InvalidEvent):
        await event_log.propose_failover("main", "writer-b", "")
    await event_log.release_grant(grant)
    head = await event_log.head("main")
    with pytest.raises(CeremonyNotApplicable, match="was released"):
        await event_log.propose_failover("main", "writer-b", "ops")
    assert await event_log.head("main") == head
    assert await event_log.ceremonies("main") == []


async def test_approvals_come_from_keys_of_the_policy_one_per_key(event_log):
    await witnessed_ledger(event_log)
    proposal = await event_log.propose_failover("main", "writer-b", "ops")
    head = await event_log.head("main")
    with pytest.raises(CeremonyNotFound, match="ledger main has no proposal 9"):
        await event_log.approve("main", 9, "w-bob", bytes(64), "ops")
    with pytest.raises(ApprovalRefused, match="agent-key is not a witness key of the policy"):
        await sign(event_log, proposal, "agent-key", seed=20)
    with pytest.raises(ApprovalRefused, match="nobody is not a witness key of the policy"):
        await sign(event_log, proposal, "nobody", seed=30)
    with pytest.raises(InvalidEvent, match="64-byte"):
        await event_log.approve("main", proposal, "w-bob", b"short", "ops")
    with pytest.raises(InvalidEvent, match="change only through a policy ceremony"):
        await event_log.add_key("main", "w-mallory", "witness", "mallory", bytes(32), "ops")
    assert await event_log.head("main") == head

    seq = await sign(event_log, proposal, "w-alice")
    with pytest.raises(ApprovalRefused, match="key w-alice has already approved proposal 1"):
        await sign(event_log, proposal, "w-alice")
    await sign(event_log, proposal, "w-alice-2")
    (ceremony,) = await event_log.ceremonies("main", proposal)
    assert [(a.key_id, a.owner_id, a.approved_by) for a in ceremony.approvals] == [
        ("w-alice", "alice", "ops"), ("w-alice-2", "alice", "ops")]
    assert ceremony.approvals[0].approved_seq == seq
    approved = (await event_log.read_all("main", after=seq - 1, limit=1))[0]
    assert approved.event_type == "canonlog.ceremony_approved"
    assert json.loads(approved.payload) == {
        "proposal_id": proposal, "kind": "failover", "key_id": "w-alice", "owner_id": "alice",
        "signature": ceremony.approvals[0].signature.hex(), "actor": "ops"}


async def test_failover_executes_at_the_threshold_and_fences_the_old_writer(event_log):
    old = await witnessed_ledger(event_log)
    proposal = await event_log.propose_failover("main", "writer-b", "ops")
    rival = await event_log.propose_failover("main", "writer-c", "ops")
    (proposed,) = await event_log.ceremonies("main", proposal)
    await sign(event_log, proposal, "w-alice")
    head = await event_log.head("main")
    with pytest.raises(ThresholdNotMet,
                       match="proposal 1 of ledger main has approvals from 1 of the 2 witnesses"):
        await event_log.execute_failover("main", proposal, "ops")
    assert await event_log.head("main") == head
    await append_one(event_log, old, request("s"))  # the old writer still writes until the promotion

    await sign(event_log, proposal, "w-bob")
    new = await event_log.execute_failover("main", proposal, "ops")
    assert new == WriterGrant("main", "writer-b", old.epoch + 1)
    with pytest.raises(StaleWriter):
        await append_one(event_log, old, request("s"))
    with pytest.raises(GrantUnavailable):
        await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, new, request("s"))

    promoted = (await event_log.read_stream("main", "$ledger"))[-1]
    assert (promoted.event_type, promoted.writer_id, promoted.epoch) == (
        "canonlog.writer_promoted", "writer-b", new.epoch)
    (executed,) = await event_log.ceremonies("main", proposal)
    assert json.loads(promoted.payload) == {
        "proposal_id": proposal, "previous_writer_id": "writer-a", "previous_epoch": old.epoch,
        "previous_head_sequence": proposed.head_sequence,
        "previous_head_hash": proposed.head_hash.hex(), "writer_id": "writer-b",
        "epoch": new.epoch, "threshold": 2, "statement": "canonlog/ceremony/failover/v1",
        "actor": "ops", "policy_sequence": 1,
        "approvals": [{"key_id": a.key_id, "owner_id": a.owner_id,
                       "signature": a.signature.hex()} for a in executed.approvals]}
    assert (executed.status, executed.closed_seq) == ("executed", promoted.sequence)
    (superseded,) = await event_log.ceremonies("main", rival)
    assert (superseded.status, superseded.closed_seq) == ("superseded", promoted.sequence)
    with pytest.raises(CeremonyNotApplicable, match="proposal 1 of ledger main is executed"):
        await event_log.execute_failover("main", proposal, "ops")
    with pytest.raises(CeremonyNotApplicable, match="is superseded"):
        await sign(event_log, rival, "w-carol")

    # The promoted writer starts as a restart of the holder.
    restarted = await event_log.acquire_grant("main", "writer-b")
    assert restarted.epoch == new.epoch + 1
    for event in await event_log.read_all("main", limit=1000):
        assert event.hash == event_hash_v1(event)


async def test_witnesses_a_policy_change_removes_stop_counting(event_log):
    await witnessed_ledger(event_log)
    failover = await event_log.propose_failover("main", "writer-b", "ops")
    await sign(event_log, failover, "w-alice")
    await sign(event_log, failover, "w-bob")
    without_bob = policy_of(*((k, o, seeded_key(seed)) for k, (o, seed) in WITNESSES.items()
                              if k != "w-bob"), threshold=2)
    change = await event_log.propose_policy("main", without_bob, "ops")
    await sign(event_log, change, "w-alice")
    await sign(event_log, change, "w-carol")
    await event_log.execute_policy_change("main", change, "ops")
    with pytest.raises(ThresholdNotMet, match="approvals from 1 of the 2 witnesses"):
        await event_log.execute_failover("main", failover, "ops")
    with pytest.raises(ApprovalRefused, match="w-bob is not a witness key of the policy"):
        await sign(event_log, failover, "w-bob")
    await sign(event_log, failover, "w-carol")
    await event_log.execute_failover("main", failover, "ops")
    promoted = (await event_log.read_stream("main", "$ledger"))[-1]
    assert [a["key_id"] for a in json.loads(promoted.payload)["approvals"]] == [
        "w-alice", "w-carol"]


async def test_the_policy_changes_only_through_its_ceremony(event_log):
    await witnessed_ledger(event_log)
    with pytest.raises(PolicyAlreadyEstablished, match="through a policy ceremony"):
        await event_log.establish_policy("main", POLICY, "admin")
    rotated = policy_of(("w-alice", "alice", seeded_key(11)), ("w-dave", "dave", seeded_key(15)),
                        threshold=1, wait=60)
    proposal = await event_log.propose_policy("main", rotated, "ops")
    rival = await event_log.propose_policy("main", POLICY, "ops")
    (proposed,) = await event_log.ceremonies("main", proposal)
    assert (proposed.kind, proposed.policy, proposed.policy_sequence) == ("policy", rotated, 1)
    assert statement(proposed) == policy_statement_v1(
        ledger_id="main", proposal_id=proposal, policy_sequence=1, policy=rotated)
    await sign(event_log, proposal, "w-bob")
    head = await event_log.head("main")
    with pytest.raises(ThresholdNotMet, match="approvals from 1 of the 2 witnesses"):
        await event_log.execute_policy_change("main", proposal, "ops")
    with pytest.raises(CeremonyNotApplicable, match="is a policy ceremony, not a failover"):
        await event_log.execute_failover("main", proposal, "ops")
    assert await event_log.head("main") == head
    await sign(event_log, proposal, "w-carol")
    sequence = await event_log.execute_policy_change("main", proposal, "ops")
    assert [(p.sequence, p.policy) for p in await event_log.policies("main")] == [
        (1, POLICY), (sequence, rotated)]
    changed = (await event_log.read_all("main", after=sequence - 1, limit=1))[0]
    (executed,) = await event_log.ceremonies("main", proposal)
    assert json.loads(changed.payload) == {
        "proposal_id": proposal, "previous_policy_sequence": 1, "policy": rotated.document(),
        "threshold": 2, "statement": "canonlog/ceremony/policy/v1", "actor": "ops",
        "approvals": [{"key_id": a.key_id, "owner_id": a.owner_id,
                       "signature": a.signature.hex()} for a in executed.approvals]}
    (superseded,) = await event_log.ceremonies("main", rival)
    assert (executed.status, superseded.status) == ("executed", "superseded")
    # The new witness set and thresholds are in force at once.
    failover = await event_log.propose_failover("main", "writer-b", "ops")
    with pytest.raises(ApprovalRefused, match="w-bob is not a witness key"):
        await sign(event_log, failover, "w-bob")
    await sign(event_log, failover, "w-dave", seed=15)
    assert (await event_log.execute_failover("main", failover, "ops")).writer_id == "writer-b"


async def test_a_ledger_without_a_policy_runs_no_ceremony(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s"))
    await event_log.halt("main", "drill", "ops")
    head = await event_log.head("main")
    for step in (event_log.propose_resume("main", "ops"),
                 event_log.propose_failover("main", "writer-b", "ops"),
                 event_log.propose_policy("main", POLICY, "ops")):
        with pytest.raises(NoGovernancePolicy, match="ledger adopt-policy"):
            await step
    assert await event_log.head("main") == head
    with pytest.raises(InvalidEvent, match="the failover threshold must be a whole number"):
        await event_log.establish_policy("main", dataclasses.replace(
            POLICY, failover_threshold=5), "admin")
    adopted = await event_log.establish_policy("main", POLICY, "admin")
    established = (await event_log.read_all("main", after=adopted - 1))[0]
    assert json.loads(established.payload) == {"kind": "adoption", "policy": POLICY.document(),
                                               "actor": "admin"}
    assert await event_log.propose_resume("main", "ops") == 1


async def test_a_proposal_lapses_when_the_grant_moves(event_log):
    await witnessed_ledger(event_log)
    proposal = await event_log.propose_failover("main", "writer-b", "ops")
    await sign(event_log, proposal, "w-alice")
    await event_log.acquire_grant("main", "writer-a")  # a restart: a new epoch
    message = ("proposal 1 of ledger main was made against writer writer-a at epoch 1, "
               "but the grant is now held by writer-a at epoch 2")
    with pytest.raises(CeremonyNotApplicable, match=message):
        await sign(event_log, proposal, "w-bob")
    with pytest.raises(CeremonyNotApplicable, match=message):
        await event_log.execute_failover("main", proposal, "ops")


async def test_resume_ceremony_waits_the_policys_period(event_log):
    await witnessed_ledger(event_log, dataclasses.replace(POLICY, resume_wait_seconds=7200))
    await event_log.halt("main", "suspected tampering", "ops")
    halt = (await event_log.read_stream("main", "$ledger"))[-1]
    proposal = await event_log.propose_resume("main", "ops")
    await sign(event_log, proposal, "w-alice")
    await sign(event_log, proposal, "w-bob")
    with pytest.raises(WaitingPeriodNotOver) as early:
        await event_log.resume_ceremony("main", proposal, "ops")
    assert re.fullmatch(
        f"ledger main was halted at sequence {halt.sequence}; resuming waits 2h 0m 0s after "
        r"the halt, and (2h 0m 0s|1h 59m \d+s) remain", str(early.value))


async def test_resume_ceremony_needs_the_threshold(event_log):
    grant = await witnessed_ledger(event_log)
    with pytest.raises(CeremonyNotApplicable, match="ledger main is not halted"):
        await event_log.propose_resume("main", "ops")
    await event_log.halt("main", "suspected tampering", "ops")
    halt = (await event_log.read_stream("main", "$ledger"))[-1]
    proposal = await event_log.propose_resume("main", "ops")
    assert await event_log.propose_resume("main", "someone else") == proposal
    (ceremony,) = await event_log.ceremonies("main", proposal)
    assert (ceremony.kind, ceremony.halt_sequence, ceremony.halt_hash) == (
        "resume", halt.sequence, halt.hash)
    assert ceremony.target_writer_id is None and ceremony.head_sequence is None
    with pytest.raises(CeremonyNotApplicable, match="is a resume ceremony, not a failover"):
        await event_log.execute_failover("main", proposal, "ops")
    await sign(event_log, proposal, "w-alice")

    with pytest.raises(ThresholdNotMet, match="approvals from 1 of the 2 witnesses"):
        await event_log.resume_ceremony("main", proposal, "ops")
    with pytest.raises(SystemHalted):
        await append_one(event_log, grant, request("s"))

    await sign(event_log, proposal, "w-bob")
    sequence = await event_log.resume_ceremony("main", proposal, "ops")
    assert not (await event_log.ledger_state("main")).halted
    await append_one(event_log, grant, request("s"))
    resumed = (await event_log.read_all("main", after=sequence - 1, limit=1))[0]
    (executed,) = await event_log.ceremonies("main", proposal)
    assert (executed.status, executed.closed_seq) == ("executed", sequence)
    assert resumed.event_type == "canonlog.resumed"
    assert json.loads(resumed.payload) == {
        "actor": "ops", "halt_reason": "suspected tampering",
        "evidence": {
            "proposal_id": proposal, "halt_sequence": halt.sequence,
            "halt_hash": halt.hash.hex(), "threshold": 2, "min_wait_seconds": 0,
            "policy_sequence": 1, "statement": "canonlog/ceremony/resume/v1",
            "approvals": [{"key_id": a.key_id, "owner_id": a.owner_id,
                           "signature": a.signature.hex()} for a in executed.approvals]}}

    await event_log.halt("main", "again", "ops")
    assert await event_log.propose_resume("main", "ops") == proposal + 1
    with pytest.raises(CeremonyNotApplicable, match=f"proposal {proposal} of ledger main is "
                                                    "executed"):
        await event_log.resume_ceremony("main", proposal, "ops")


async def test_a_halt_ends_only_through_its_resume_ceremony(event_log):
    """No adapter resumes without witnesses: there is no bare resume, and the ceremony
    refuses to run without the policy's approvals."""
    grant = await witnessed_ledger(event_log, dataclasses.replace(POLICY, resume_threshold=1))
    assert not hasattr(event_log, "resume")
    await event_log.halt("main", "drill", "ops")
    proposal = await event_log.propose_resume("main", "ops")
    with pytest.raises(ThresholdNotMet, match="approvals from 0 of the 1 witnesses"):
        await event_log.resume_ceremony("main", proposal, "ops")
    with pytest.raises(SystemHalted):
        await append_one(event_log, grant, request("s"))
    assert (await event_log.ledger_state("main")).halted

    await sign(event_log, proposal, "w-alice")
    await event_log.resume_ceremony("main", proposal, "ops")
    with pytest.raises(CeremonyNotApplicable, match=f"proposal {proposal} of ledger main is "
                                                    "executed"):
        await sign(event_log, proposal, "w-bob")
    await append_one(event_log, grant, request("s"))


async def test_ceremonies_of_an_unknown_ledger_are_none(event_log):
    assert await event_log.ceremonies("nowhere") == []
    await witnessed_ledger(event_log)
    assert await event_log.ceremonies("main", 1) == []

