"""Governance use cases: witnessed failover, resume and policy ceremonies.

The statements witnesses sign and the rules that judge a ceremony are in
canonlog.domain.ceremony and canonlog.domain.governance. The store enforces the
ledger's governance policy (its witnesses, thresholds and waiting period) and
everything else about a ceremony except the signatures, which PostgreSQL cannot
check; these functions verify each signature against the policy's key before it
is recorded and every recorded one again before a ceremony executes, and
report_ceremony re-checks them afterwards, as the verifier does for the chained
outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import EventReader, GovernedLedger, HaltChannel
from canonlog.domain.ceremony import RESUME, Approval, Ceremony, obstacle, statement
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    CeremonyNotFound,
    NoGovernancePolicy,
    TamperDetected,
)
from canonlog.domain.events import WriterGrant
from canonlog.domain.governance import GovernancePolicy, PolicyInForce, no_policy_message
from canonlog.domain.signing import signature_is_valid

# -- reports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedApproval:
    """One recorded approval and whether it counts: problem is None when it does."""

    approval: Approval
    problem: str | None
    #: True when the signature itself does not verify: it was not recorded by canonlog.
    forged: bool = False


@dataclass(frozen=True, slots=True)
class CeremonyReport:
    """A ceremony checked against the ledger as it is now."""

    ceremony: Ceremony
    statement: bytes
    approvals: tuple[CheckedApproval, ...]
    #: Witnesses (keys of the policy in force) behind the approvals that count.
    witnesses: int
    threshold: int
    #: Why it cannot execute now (None when it can, waiting period aside).
    blocker: str | None
    #: Resume ceremonies: when the halt was recorded.
    halted_at: datetime | None = None
    #: The policy's waiting period after a halt (None: the ledger has no policy).
    min_wait_seconds: int | None = None

    @property
    def forged(self) -> tuple[CheckedApproval, ...]:
        return tuple(a for a in self.approvals if a.forged)

    @property
    def ready_at(self) -> datetime | None:
        """When the waiting period of a resume ceremony ends, by the database's clock."""
        if self.halted_at is None or self.min_wait_seconds is None:
            return None
        return self.halted_at + timedelta(seconds=self.min_wait_seconds)


def _check_approvals(
    ceremony: Ceremony, content: bytes, policy: GovernancePolicy | None
) -> tuple[tuple[CheckedApproval, ...], int]:
    checked = []
    for approval in ceremony.approvals:
        problem, forged = None, False
        witness = policy.witness(approval.key_id) if policy is not None else None
        if witness is None or witness.public_key != approval.public_key:
            problem = f"key {approval.key_id} is not a witness key of the policy in force"
        elif not signature_is_valid(witness.public_key, approval.signature, content):
            problem, forged = f"signature by key {approval.key_id} does not verify", True
        checked.append(CheckedApproval(approval, problem, forged))
    return tuple(checked), sum(1 for c in checked if c.problem is None)


async def policy_in_force(event_log: EventReader, ledger_id: str) -> PolicyInForce | None:
    """The ledger's governance policy in force, or None when it has none."""
    policies = await event_log.policies(ledger_id)
    return policies[-1] if policies else None


async def report_ceremony(event_log: EventReader, ceremony: Ceremony) -> CeremonyReport:
    """Checks every signature of a ceremony against the policy in force, and whether the
    ceremony could execute now."""
    ledger_id = ceremony.ledger_id
    in_force = await policy_in_force(event_log, ledger_id)
    policy = in_force.policy if in_force is not None else None
    content = statement(ceremony)
    approvals, witnesses = _check_approvals(ceremony, content, policy)
    threshold = policy.threshold(ceremony.kind) if policy is not None else 0
    state = await event_log.ledger_state(ledger_id)
    halted_at = current_halt = None
    if ceremony.kind == RESUME and ceremony.halt_sequence is not None:
        (halt,) = await event_log.read_all(ledger_id, after=ceremony.halt_sequence - 1, limit=1)
        halted_at = halt.recorded_at
        current_halt = await _last_halt(event_log, ledger_id)
    blocker: str | None = None
    match obstacle(ceremony, state, current_halt,
                   in_force.sequence if in_force is not None else None):
        case "closed":
            blocker = f"{ceremony.status} at sequence {ceremony.closed_seq}"
        case "grant_moved":
            blocker = (f"the grant moved to {state.writer_id or 'nobody'} at epoch "
                       f"{state.epoch} since the proposal")
        case "halt_over":
            blocker = f"the halt at sequence {ceremony.halt_sequence} is over"
        case "policy_changed":
            blocker = f"the policy of sequence {ceremony.policy_sequence} is no longer in force"
        case None if policy is None:
            blocker = "the ledger has no governance policy"
        case None if any(a.forged for a in approvals):
            blocker = "an approval's signature does not verify"
        case None if witnesses < threshold:
            blocker = f"approved by {witnesses} of the {threshold} witnesses needed"
    wait = policy.resume_wait_seconds if policy is not None else None
    return CeremonyReport(ceremony, content, approvals, witnesses, threshold, blocker, halted_at,
                          wait)


async def _last_halt(event_log: EventReader, ledger_id: str) -> int | None:
    halts = [e.sequence for e in await event_log.read_stream(ledger_id, "$ledger")
             if e.event_type == "canonlog.halted"]
    return halts[-1] if halts else None


async def current_resume_ceremony(event_log: EventReader, ledger_id: str) -> Ceremony | None:
    """Returns the resume ceremony of the ledger's current halt, if one was opened."""
    state = await event_log.ledger_state(ledger_id)
    if not state.halted:
        return None
    halt = await _last_halt(event_log, ledger_id)
    for ceremony in await event_log.ceremonies(ledger_id):
        if ceremony.kind == RESUME and ceremony.halt_sequence == halt:
            return ceremony
    return None


# -- steps ----------------------------------------------------------------------------


async def _ceremony(event_log: EventReader, ledger_id: str, proposal_id: int) -> Ceremony:
    found = await event_log.ceremonies(ledger_id, proposal_id)
    if not found:
        raise CeremonyNotFound(f"ledger {ledger_id} has no proposal {proposal_id}")
    return found[0]


async def propose_failover(event_log: GovernedLedger, ledger_id: str, target_writer_id: str,
                           actor: str) -> Ceremony:
    """Opens a failover ceremony against the current grant and head."""
    proposal_id = await event_log.propose_failover(ledger_id, target_writer_id, actor)
    return await _ceremony(event_log, ledger_id, proposal_id)


async def approve(
    event_log: GovernedLedger, ledger_id: str, proposal_id: int, key_id: str, actor: str, *,
    private_key: Ed25519PrivateKey | None = None, signature: bytes | None = None,
) -> Ceremony:
    """Signs the proposal's statement with private_key (or takes a signature made
    elsewhere), verifies it against the registered witness key and records it.

    Raises NoGovernancePolicy when the ledger has no policy, ApprovalRefused when
    key_id is not a witness key of the policy in force, the private key is not that
    key's, or the signature does not verify; and what Governance.approve raises.
    """
    if (private_key is None) == (signature is None):
        raise ValueError("approve needs exactly one of private_key and signature")
    ceremony = await _ceremony(event_log, ledger_id, proposal_id)
    in_force = await policy_in_force(event_log, ledger_id)
    if in_force is None:
        raise NoGovernancePolicy(no_policy_message(ledger_id))
    key = in_force.policy.witness(key_id)
    if key is None:
        raise ApprovalRefused(
            f"key {key_id} is not a witness key of the policy of ledger {ledger_id}")
    content = statement(ceremony)
    if private_key is not None:
        signature = private_key.sign(content)
    assert signature is not None
    if not signature_is_valid(key.public_key, signature, content):
        raise ApprovalRefused(
            f"key {key_id} did not sign proposal {proposal_id} of ledger {ledger_id}: "
            + ("the private key given is not the one registered as that key"
               if private_key is not None else "the signature does not verify over its statement"))
    await event_log.approve(ledger_id, proposal_id, key_id, signature, actor)
    return await _ceremony(event_log, ledger_id, proposal_id)


async def approve_resume(
    event_log: GovernedLedger, ledger_id: str, key_id: str, actor: str, *,
    private_key: Ed25519PrivateKey | None = None, signature: bytes | None = None,
) -> Ceremony:
    """Opens the resume ceremony of the current halt if needed, and approves it."""
    proposal_id = await event_log.propose_resume(ledger_id, actor)
    return await approve(event_log, ledger_id, proposal_id, key_id, actor,
                         private_key=private_key, signature=signature)


def _refuse_forged(report: CeremonyReport) -> None:
    forged = report.forged
    if forged:
        ceremony = report.ceremony
        raise TamperDetected(
            f"the approval of proposal {ceremony.proposal_id} of ledger {ceremony.ledger_id} by "
            f"key {forged[0].approval.key_id} does not verify over its statement, so it was not "
            "recorded by canonlog; investigate, and open a new proposal")


async def execute_failover(event_log: GovernedLedger, ledger_id: str, proposal_id: int,
                           actor: str) -> WriterGrant:
    """Re-verifies every approval, then moves the grant (Governance.execute_failover);
    raises TamperDetected when a recorded signature does not verify."""
    ceremony = await _ceremony(event_log, ledger_id, proposal_id)
    _refuse_forged(await report_ceremony(event_log, ceremony))
    return await event_log.execute_failover(ledger_id, proposal_id, actor)


async def propose_policy(event_log: GovernedLedger, ledger_id: str, policy: GovernancePolicy,
                         actor: str) -> Ceremony:
    """Opens a policy ceremony to replace the policy in force with policy."""
    proposal_id = await event_log.propose_policy(ledger_id, policy, actor)
    return await _ceremony(event_log, ledger_id, proposal_id)


async def execute_policy_change(event_log: GovernedLedger, ledger_id: str, proposal_id: int,
                                actor: str) -> int:
    """Re-verifies every approval, then replaces the policy
    (Governance.execute_policy_change); returns the canonlog.policy_changed sequence."""
    ceremony = await _ceremony(event_log, ledger_id, proposal_id)
    _refuse_forged(await report_ceremony(event_log, ceremony))
    return await event_log.execute_policy_change(ledger_id, proposal_id, actor)


async def execute_resume(
    event_log: GovernedLedger, ledger_id: str, actor: str, channels: Sequence[HaltChannel] = (),
) -> int:
    """Resumes the halted ledger through the resume ceremony of its current halt and
    announces it on every channel; returns the sequence of the resumed event.

    Raises CeremonyNotApplicable when the ledger is not halted, CeremonyNotFound when
    no witness has approved yet, TamperDetected as execute_failover does, and what
    Governance.resume_ceremony raises (WaitingPeriodNotOver, ThresholdNotMet).
    """
    ceremony = await current_resume_ceremony(event_log, ledger_id)
    if ceremony is None:
        if not (await event_log.ledger_state(ledger_id)).halted:
            raise CeremonyNotApplicable(f"ledger {ledger_id} is not halted")
        raise CeremonyNotFound(
            f"no witness has approved resuming ledger {ledger_id} yet; each witness runs "
            "`canonlog resume approve`")
    _refuse_forged(await report_ceremony(event_log, ceremony))
    sequence = await event_log.resume_ceremony(ledger_id, ceremony.proposal_id, actor)
    for channel in channels:
        await channel.announce(ledger_id, None)
    return sequence
