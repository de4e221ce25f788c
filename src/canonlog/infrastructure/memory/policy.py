"""The governance policy in memory: establishing it, the policy ceremony, and the
checks every ceremony step shares (the proposal applies, the approvals that count).

Each function mirrors its function of sql/0003_ceremonies.sql or
sql/0004_governance_policy.sql step for step; the rules themselves are
canonlog.domain's. The in-memory store has one session, a member of every role,
so the policy's proposers always admit it.
"""

from __future__ import annotations

from dataclasses import replace

from canonlog.domain.ceremony import (
    POLICY,
    Ceremony,
    CeremonyStatus,
    obstacle,
)
from canonlog.domain.errors import (
    CeremonyNotApplicable,
    CeremonyNotFound,
    InvalidEvent,
    NoGovernancePolicy,
    PolicyAlreadyEstablished,
    ThresholdNotMet,
)
from canonlog.domain.events import SYSTEM_STREAM, RecordedEvent
from canonlog.domain.governance import (
    POLICY_CHANGED,
    POLICY_ESTABLISHED,
    POLICY_STATEMENT_V1,
    GovernancePolicy,
    PolicyInForce,
    counted_keys,
    no_policy_message,
    policy_problem,
)
from canonlog.infrastructure.memory.pgtext import storable
from canonlog.infrastructure.memory.store import (
    MAX_NAME,
    MemoryLedger,
    MemoryStore,
    ledger_state_of,
)


class MemoryPolicies(MemoryStore):
    """Establishing and changing a ledger's governance policy over a MemoryStore."""

    async def establish_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str
                               ) -> int:
        storable(ledger_id, actor, *(w.key_id for w in policy.witnesses),
                 *(w.owner_id for w in policy.witnesses), *policy.proposers)
        document = checked_document(policy)
        if not 1 <= len(ledger_id) <= MAX_NAME:
            raise InvalidEvent("ledger_id must be 1 to 256 characters")
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._ledgers.get(ledger_id) or MemoryLedger(ledger_id)
            if ledger.policies:
                raise PolicyAlreadyEstablished(
                    f"ledger {ledger_id} has a governance policy already; it changes only "
                    "through a policy ceremony")
            kind = "adoption" if ledger.events else "genesis"
            event = self._system_event(ledger, POLICY_ESTABLISHED, {
                "kind": kind, "policy": document, "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._ledgers[ledger_id] = ledger
            self._store(ledger, [event])
            ledger.policies.append(PolicyInForce(event.sequence, policy))
            return event.sequence

    async def propose_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str) -> int:
        storable(ledger_id, actor, *(w.key_id for w in policy.witnesses),
                 *(w.owner_id for w in policy.witnesses), *policy.proposers)
        document = checked_document(policy)
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            in_force = policy_in_force(ledger)
            proposal_id = max(ledger.ceremonies, default=0) + 1
            event = self._system_event(ledger, "canonlog.ceremony_proposed", {
                "proposal_id": proposal_id, "kind": POLICY, "policy": document,
                "policy_sequence": in_force.sequence, "writer_id": ledger.writer_id,
                "epoch": ledger.epoch, "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            ledger.ceremonies[proposal_id] = Ceremony(
                ledger_id, proposal_id, POLICY, "open", ledger.writer_id, ledger.epoch, None,
                None, None, None, None, actor, event.sequence, event.recorded_at, None,
                policy=policy, policy_sequence=in_force.sequence)
            return proposal_id

    async def execute_policy_change(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        storable(ledger_id, actor)
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            in_force = policy_in_force(ledger)
            ceremony = open_ceremony(ledger, proposal_id, POLICY, in_force)
            assert ceremony.policy is not None
            threshold = in_force.policy.policy_threshold
            approvals = counted_approvals(ledger, ceremony, in_force.policy, threshold)
            event = self._system_event(ledger, POLICY_CHANGED, {
                "proposal_id": proposal_id, "previous_policy_sequence": in_force.sequence,
                "policy": ceremony.policy.document(), "approvals": approvals,
                "threshold": threshold, "statement": POLICY_STATEMENT_V1, "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            ledger.policies.append(PolicyInForce(event.sequence, ceremony.policy))
            for other in list(ledger.ceremonies.values()):
                if other.kind == POLICY and other.status == "open":
                    status: CeremonyStatus = (
                        "executed" if other.proposal_id == proposal_id else "superseded")
                    ledger.ceremonies[other.proposal_id] = replace(
                        other, status=status, closed_seq=event.sequence)
            return event.sequence



def checked_document(policy: GovernancePolicy) -> dict[str, object]:
    """The policy's document, as canonlog.checked_policy_v1 refuses or stores it."""
    document = policy.document()
    problem = policy_problem(document)
    if problem is not None:
        raise InvalidEvent(problem)
    return document


def check_actor(actor: str) -> None:
    if not 1 <= len(actor) <= MAX_NAME:
        raise InvalidEvent("the actor of a ceremony step must be 1 to 256 characters")


def policy_in_force(ledger: MemoryLedger) -> PolicyInForce:
    """As canonlog.policy_in_force_v1: the newest policy, or NoGovernancePolicy."""
    if not ledger.policies:
        raise NoGovernancePolicy(no_policy_message(ledger.ledger_id))
    return ledger.policies[-1]


def counted_approvals(ledger: MemoryLedger, ceremony: Ceremony, policy: GovernancePolicy,
                      threshold: int) -> list[dict[str, str]]:
    """The approvals that count under policy, as canonlog.counted_approvals_v2 lists
    them; raises ThresholdNotMet as canonlog.check_threshold_v1 does."""
    counted = counted_keys(policy, ((a.key_id, a.public_key) for a in ceremony.approvals))
    if len(counted) < threshold:
        raise ThresholdNotMet(
            f"proposal {ceremony.proposal_id} of ledger {ledger.ledger_id} has approvals from "
            f"{len(counted)} of the {threshold} witnesses it needs")
    by_key = {a.key_id: a for a in ceremony.approvals}
    result = []
    for key_id in counted:
        witness = policy.witness(key_id)
        assert witness is not None
        result.append({"key_id": key_id, "owner_id": witness.owner_id,
                       "signature": by_key[key_id].signature.hex()})
    return result


def last_halt(ledger: MemoryLedger) -> RecordedEvent | None:
    for event in reversed(ledger.streams.get(SYSTEM_STREAM, [])):
        if event.event_type == "canonlog.halted":
            return event
    return None


def open_ceremony(ledger: MemoryLedger, proposal_id: int, kind: str | None,
                  in_force: PolicyInForce | None = None) -> Ceremony:
    """The checks of canonlog.open_ceremony_v2 (in_force given) or open_ceremony_v1:
    known, of the kind, open, still applying."""
    ledger_id = ledger.ledger_id
    ceremony = ledger.ceremonies.get(proposal_id)
    if ceremony is None:
        raise CeremonyNotFound(f"ledger {ledger_id} has no proposal {proposal_id}")
    if in_force is not None and ceremony.kind == POLICY and ceremony.status == "open":
        if obstacle(ceremony, ledger_state_of(ledger), None, in_force.sequence):
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} would change the policy of "
                f"sequence {ceremony.policy_sequence}, which is no longer in force")
        if kind is not None and kind != POLICY:
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} is a policy ceremony, not a "
                f"{kind} ceremony")
        return ceremony
    if kind is not None and ceremony.kind != kind:
        raise CeremonyNotApplicable(
            f"proposal {proposal_id} of ledger {ledger_id} is a {ceremony.kind} ceremony, "
            f"not a {kind} ceremony")
    halt = last_halt(ledger)
    match obstacle(ceremony, ledger_state_of(ledger), halt.sequence if halt else None):
        case "closed":
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} is {ceremony.status} "
                f"(at sequence {ceremony.closed_seq})")
        case "grant_moved":
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} was made against writer "
                f"{ceremony.writer_id} at epoch {ceremony.epoch}, but the grant is now held by "
                f"{ledger.writer_id or 'nobody'} at epoch {ledger.epoch}")
        case "halt_over" | "policy_changed":
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} would end the halt at sequence "
                f"{ceremony.halt_sequence}, which is over")
    return ceremony
