"""Governance in tests: a policy and the resume ceremony, at their smallest.

A ledger resumes only through its resume ceremony, under its governance policy;
these helpers establish a policy of one witness, thresholds of 1 and no waiting
period, and run the ceremony through any EventLog. In PostgreSQL establishing a
policy is the administrator's and the ceremony the operator's: pass a log
connected as the administrator as governor (the in-memory log is all of them).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import EventLog
from canonlog.domain.ceremony import resume_statement_v1
from canonlog.domain.governance import GovernancePolicy, PolicyWitness
from tests.support.keys import public_bytes

#: The witness of the test policy; a fixed seed keeps its signatures, and so the
#: payloads of the ceremony's events, the same from one adapter to the next.
RESUME_WITNESS_KEY_ID = "w-resume"
RESUME_WITNESS_OWNER = "resume-witness"
RESUME_WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes([42]) * 32)


def policy_of(*witnesses: tuple[str, str, Ed25519PrivateKey], threshold: int = 1,
              wait: int = 0, proposers: tuple[str, ...] = ("canonlog_operator",)
              ) -> GovernancePolicy:
    """A policy of witnesses (key id, owner, private key), one threshold for every kind."""
    return GovernancePolicy(
        tuple(PolicyWitness(k, o, public_bytes(key)) for k, o, key in witnesses),
        threshold, threshold, threshold, wait, proposers)


TEST_POLICY = policy_of((RESUME_WITNESS_KEY_ID, RESUME_WITNESS_OWNER, RESUME_WITNESS_KEY))


async def ensure_test_policy(governor: EventLog, ledger_id: str = "main",
                             actor: str = "ops") -> None:
    """Establishes TEST_POLICY for the ledger unless it has a policy already."""
    if not await governor.policies(ledger_id):
        await governor.establish_policy(ledger_id, TEST_POLICY, actor)


async def resume_by_ceremony(log: EventLog, ledger_id: str = "main", actor: str = "ops", *,
                             governor: EventLog | None = None) -> int:
    """Resumes the halted ledger as it must be: establishes TEST_POLICY if the ledger has
    no policy, proposes, approves with the witness's signature over the resume statement
    and executes. Returns the canonlog.resumed sequence.

    Adds up to four chained events: canonlog.policy_established (first time only),
    canonlog.ceremony_proposed, canonlog.ceremony_approved, canonlog.resumed.
    Raises what the ceremony steps raise (CeremonyNotApplicable when not halted).
    """
    governor = governor or log
    await ensure_test_policy(governor, ledger_id, actor)
    proposal_id = await governor.propose_resume(ledger_id, actor)
    (ceremony,) = await governor.ceremonies(ledger_id, proposal_id)
    assert ceremony.halt_sequence is not None and ceremony.halt_hash is not None
    signature = RESUME_WITNESS_KEY.sign(resume_statement_v1(
        ledger_id=ledger_id, halt_sequence=ceremony.halt_sequence,
        halt_hash=ceremony.halt_hash))
    await governor.approve(ledger_id, proposal_id, RESUME_WITNESS_KEY_ID, signature, actor)
    return await governor.resume_ceremony(ledger_id, proposal_id, actor)
