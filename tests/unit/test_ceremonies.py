"""The ceremony statements and the application's ceremony steps, over the in-memory log."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application import ceremonies
from canonlog.application.ceremonies import report_ceremony
from canonlog.application.halting import halt_ledger
from canonlog.domain.ceremony import (
    HaltSeen,
    failover_statement_v1,
    governance_event_problems,
    resume_statement_v1,
    statement,
)
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    CeremonyNotFound,
    NoGovernancePolicy,
    PolicyAlreadyEstablished,
    TamperDetected,
    WaitingPeriodNotOver,
)
from canonlog.domain.governance import PolicyInForce
from canonlog.infrastructure.memory import MemoryEventLog
from tests.support.ceremony import policy_of
from tests.support.keys import public_bytes, seeded_key

SPEC = Path(__file__).parents[2] / "docs" / "reference" / "ceremonies.md"
VECTOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def spec_vectors() -> list[tuple[str, str]]:
    text = SPEC.read_text("utf-8")
    statements = [line.split()[1] for line in text.splitlines() if line.startswith("statement ")]
    signatures = [line.split()[1] for line in text.splitlines() if line.startswith("signature ")]
    return list(zip(statements, signatures, strict=True))


def test_the_spec_vectors_are_what_the_code_signs() -> None:
    failover = failover_statement_v1(
        ledger_id="main", proposal_id=1, target_writer_id="writer-2", writer_id="writer-1",
        epoch=3, head_sequence=42, head_hash=bytes([0xAB]) * 32)
    resume = resume_statement_v1(ledger_id="main", halt_sequence=7,
                                 halt_hash=bytes([0xCD]) * 32)
    assert spec_vectors() == [(failover.hex(), VECTOR_KEY.sign(failover).hex()),
                              (resume.hex(), VECTOR_KEY.sign(resume).hex())]
    assert public_bytes(VECTOR_KEY).hex() in SPEC.read_text("utf-8")


def test_every_field_of_a_statement_is_covered_unambiguously() -> None:
    base = {"ledger_id": "main", "proposal_id": 1, "target_writer_id": "w2",
            "writer_id": "w1", "epoch": 3, "head_sequence": 42, "head_hash": bytes(32)}
    changed = {"ledger_id": "mai", "proposal_id": 2, "target_writer_id": "w1",
               "writer_id": "w2", "epoch": 4, "head_sequence": 43, "head_hash": bytes([1]) * 32}
    original = failover_statement_v1(**base)
    for name, value in changed.items():
        assert failover_statement_v1(**(base | {name: value})) != original, name
    # Moving characters between adjacent text fields changes the bytes.
    assert (failover_statement_v1(**(base | {"target_writer_id": "w2w", "writer_id": "1"}))
            != failover_statement_v1(**(base | {"target_writer_id": "w2", "writer_id": "w1"})))
    with pytest.raises(ValueError):
        resume_statement_v1(ledger_id="main", halt_sequence=1, halt_hash=b"short")


WITNESSES = {"w-a": ("alice", 1), "w-b": ("bob", 2), "w-c": ("carol", 3)}
POLICY = policy_of(*((k, o, seeded_key(seed)) for k, (o, seed) in WITNESSES.items()),
                   threshold=2)


@pytest.fixture
async def log() -> MemoryEventLog:
    log = MemoryEventLog()
    await log.establish_policy("main", POLICY, "admin")
    await log.acquire_grant("main", "writer-1")
    return log


def in_force(sequence: int = 1) -> PolicyInForce:
    return PolicyInForce(sequence, POLICY)


async def test_approve_signs_the_statement_and_refuses_a_wrong_key_before_recording(log) -> None:
    ceremony = await ceremonies.propose_failover(log, "main", "writer-2", "ops")
    head = await log.head("main")
    with pytest.raises(ApprovalRefused, match="private key given is not the one registered"):
        await ceremonies.approve(log, "main", ceremony.proposal_id, "w-a", "ops",
                                 private_key=seeded_key(2))
    with pytest.raises(ApprovalRefused, match="signature does not verify over its statement"):
        await ceremonies.approve(log, "main", ceremony.proposal_id, "w-a", "ops",
                                 signature=bytes(64))
    with pytest.raises(ApprovalRefused, match="w-x is not a witness key of the policy"):
        await ceremonies.approve(log, "main", ceremony.proposal_id, "w-x", "ops",
                                 private_key=seeded_key(9))
    with pytest.raises(CeremonyNotFound):
        await ceremonies.approve(log, "main", 99, "w-a", "ops", private_key=seeded_key(1))
    assert await log.head("main") == head
    signature = seeded_key(1).sign(statement(ceremony))
    approved = await ceremonies.approve(log, "main", ceremony.proposal_id, "w-a", "ops",
                                        signature=signature)
    assert [a.signature for a in approved.approvals] == [signature]
    report = await report_ceremony(log, approved)
    assert (report.witnesses, report.blocker) == (
        1, "approved by 1 of the 2 witnesses needed")


async def test_execution_refuses_a_forged_approval_and_promotion_events_self_verify(log) -> None:
    ceremony = await ceremonies.propose_failover(log, "main", "writer-2", "ops")
    await ceremonies.approve(log, "main", ceremony.proposal_id, "w-a", "ops", private_key=seeded_key(1))
    await log.approve("main", ceremony.proposal_id, "w-b", bytes(64), "mallory")
    (forged,) = (await report_ceremony(log, (await log.ceremonies("main"))[0])).forged
    assert forged.approval.key_id == "w-b"
    with pytest.raises(TamperDetected, match="by key w-b does not verify"):
        await ceremonies.execute_failover(log, "main", ceremony.proposal_id, "ops")

    honest = await ceremonies.propose_failover(log, "main", "writer-3", "ops")
    for key_id in ("w-a", "w-c"):
        await ceremonies.approve(log, "main", honest.proposal_id, key_id, "ops",
                                 private_key=seeded_key(WITNESSES[key_id][1]))
    grant = await ceremonies.execute_failover(log, "main", honest.proposal_id, "ops")
    assert (grant.writer_id, grant.epoch) == ("writer-3", 2)
    promoted = (await log.read_stream("main", "$ledger"))[-1]
    keys = {k.key_id: k for k in await log.list_keys("main")}
    assert governance_event_problems(promoted, keys, in_force()) == []

    payload = json.loads(promoted.payload)
    payload["approvals"][0]["signature"] = bytes(64).hex()
    bad = dataclasses.replace(promoted, payload=json.dumps(payload).encode())
    assert governance_event_problems(bad, keys, in_force()) == [
        f"the signature by key w-a at sequence {promoted.sequence} does not verify",
        f"canonlog.writer_promoted at sequence {promoted.sequence} carries valid signatures "
        "of 1 witnesses; the policy in force needs 2"]
    payload = json.loads(promoted.payload) | {"writer_id": "writer-4"}
    retargeted = dataclasses.replace(promoted, payload=json.dumps(payload).encode())
    assert len(governance_event_problems(retargeted, keys, in_force())) == 3
    # The threshold is the policy's, whatever the event records.
    payload = json.loads(promoted.payload) | {"threshold": 1}
    payload["approvals"] = payload["approvals"][:1]
    lowered = dataclasses.replace(promoted, payload=json.dumps(payload).encode())
    assert governance_event_problems(lowered, keys, in_force()) == [
        f"canonlog.writer_promoted at sequence {promoted.sequence} carries valid signatures "
        "of 1 witnesses; the policy in force needs 2"]
    # A key outside the policy in force does not count, even with a valid signature.
    narrower = PolicyInForce(1, policy_of(("w-a", "alice", seeded_key(1)),
                                          ("w-b", "bob", seeded_key(2)), threshold=2))
    assert f"key w-c is not a witness of the policy in force at sequence {promoted.sequence} " \
        "(established at sequence 1)" in governance_event_problems(promoted, keys, narrower)


async def test_the_resume_ceremony_through_the_application(log) -> None:
    with pytest.raises(CeremonyNotApplicable, match="ledger main is not halted"):
        await ceremonies.execute_resume(log, "main", "ops")
    assert (await halt_ledger(log, "main", "drill", "ops")).recorded is True
    assert (await halt_ledger(log, "main", "again", "ops")).recorded is False
    with pytest.raises(CeremonyNotFound, match="no witness has approved resuming"):
        await ceremonies.execute_resume(log, "main", "ops")
    first = await ceremonies.approve_resume(log, "main", "w-a", "ops", private_key=seeded_key(1))
    second = await ceremonies.approve_resume(log, "main", "w-b", "ops", private_key=seeded_key(2))
    assert first.proposal_id == second.proposal_id and len(second.approvals) == 2
    report = await report_ceremony(log, second)
    assert report.blocker is None and report.halted_at is not None
    sequence = await ceremonies.execute_resume(log, "main", "ops")
    resumed = (await log.read_all("main", after=sequence - 1))[0]
    halt = next(e for e in await log.read_all("main") if e.event_type == "canonlog.halted")
    seen = HaltSeen(halt.sequence, halt.hash, halt.recorded_at)
    assert resumed.event_type == "canonlog.resumed"
    assert governance_event_problems(resumed, {}, in_force(), seen) == []
    # Under a policy that waits an hour, the same resume came too early.
    waiting = PolicyInForce(1, dataclasses.replace(POLICY, resume_wait_seconds=3600))
    (problem,) = governance_event_problems(resumed, {}, waiting, seen)
    assert problem.endswith("the policy in force waits 3600s")
    (closed,) = await log.ceremonies("main", second.proposal_id)
    assert (await report_ceremony(log, closed)).blocker == f"executed at sequence {sequence}"
    assert await ceremonies.current_resume_ceremony(log, "main") is None


async def test_the_resume_waits_the_policys_period() -> None:
    log = MemoryEventLog()
    await log.establish_policy("main", dataclasses.replace(POLICY, resume_wait_seconds=3600),
                               "admin")
    await log.acquire_grant("main", "writer-1")
    await halt_ledger(log, "main", "drill", "ops")
    for key_id in ("w-a", "w-b"):
        await ceremonies.approve_resume(log, "main", key_id, "ops",
                                        private_key=seeded_key(WITNESSES[key_id][1]))
    with pytest.raises(WaitingPeriodNotOver, match="resuming waits 1h 0m 0s after the halt"):
        await ceremonies.execute_resume(log, "main", "ops")


async def test_a_ledger_without_a_policy_refuses_ceremonies_saying_how_to_make_one() -> None:
    log = MemoryEventLog()
    await log.acquire_grant("main", "writer-1")
    await halt_ledger(log, "main", "drill", "ops")
    for step in (log.propose_resume("main", "ops"), log.propose_failover("main", "w-2", "ops"),
                 log.propose_policy("main", POLICY, "ops")):
        with pytest.raises(NoGovernancePolicy, match="canonlog ledger adopt-policy"):
            await step
    await log.establish_policy("main", POLICY, "admin")
    with pytest.raises(PolicyAlreadyEstablished):
        await log.establish_policy("main", POLICY, "admin")
    assert await log.propose_resume("main", "ops") == 1
