"""Ceremonies: proposals and witnesses' approvals, and the pure rules that judge them.

A ceremony is a proposal that executes once enough distinct witnesses have
signed its *statement* with their registered Ed25519 witness keys. The
statements are versioned and framed as in canonlog.domain.hashing
(docs/reference/ceremonies.md has them with the payloads of the events):

``failover/v1 = text("canonlog/ceremony/failover/v1") || text(ledger_id) ||
i64(proposal_id) || text(target_writer_id) || text(writer_id) || i64(epoch) ||
i64(head_sequence) || head_hash``: move the grant of ledger_id, held by
writer_id at epoch, whose head was (head_sequence, head_hash), to target_writer_id.

``resume/v1 = text("canonlog/ceremony/resume/v1") || text(ledger_id) ||
i64(halt_sequence) || halt_hash``: end the halt recorded at halt_sequence.

``policy/v1`` (canonlog.domain.governance): replace the governance policy in force.

The rules here are written once and used by every party that judges a
ceremony: the in-memory store (as sql/0003_ceremonies.sql and
sql/0004_governance_policy.sql enforce them in PostgreSQL), the application's
ceremony reports and the verifier, which checks the chained outcome against the
governance policy in force at its sequence. Each party words its own messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from canonlog.domain.events import LedgerState, RegisteredKey
from canonlog.domain.governance import (
    POLICY_CHANGED,
    GovernancePolicy,
    PolicyInForce,
    policy_from_document,
    policy_statement_v1,
)
from canonlog.domain.hashing import HashedFields, frame_i64, frame_text
from canonlog.domain.signing import signature_is_valid

FAILOVER: Final = "failover"
RESUME: Final = "resume"
POLICY: Final = "policy"
FAILOVER_STATEMENT_V1: Final = "canonlog/ceremony/failover/v1"
RESUME_STATEMENT_V1: Final = "canonlog/ceremony/resume/v1"

CeremonyKind = Literal["failover", "resume", "policy"]
#: open until executed; a failover proposal is superseded when another one executes.
CeremonyStatus = Literal["open", "executed", "superseded"]


@dataclass(frozen=True, slots=True)
class Approval:
    """A witness's Ed25519 signature over a proposal's statement, recorded in the chain."""

    key_id: str
    owner_id: str
    signature: bytes
    approved_by: str
    approved_seq: int
    #: The witness public key it was made under (None: recorded before policies).
    public_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Ceremony:
    """A proposal to fail over (move the grant to target_writer_id), to resume a halt,
    or to replace the governance policy.

    writer_id and epoch are the grant when it was proposed. A failover proposal
    holds the head at that time (head_sequence, head_hash); a resume proposal the
    halt event it would end (halt_sequence, halt_hash); a policy proposal the policy
    it proposes and the sequence of the policy in force when proposed.
    """

    ledger_id: str
    proposal_id: int
    kind: CeremonyKind
    status: CeremonyStatus
    writer_id: str | None
    epoch: int
    target_writer_id: str | None
    head_sequence: int | None
    head_hash: bytes | None
    halt_sequence: int | None
    halt_hash: bytes | None
    proposed_by: str
    proposed_seq: int
    proposed_at: datetime
    closed_seq: int | None
    approvals: tuple[Approval, ...] = ()
    policy: GovernancePolicy | None = None
    policy_sequence: int | None = None


# -- statements -----------------------------------------------------------------------


def _hash32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError(f"a chain hash is 32 bytes, not {len(value)}")
    return value


def failover_statement_v1(
    *, ledger_id: str, proposal_id: int, target_writer_id: str, writer_id: str, epoch: int,
    head_sequence: int, head_hash: bytes,
) -> bytes:
    """Returns the bytes a witness signs to approve a failover proposal (version 1)."""
    return b"".join((
        frame_text(FAILOVER_STATEMENT_V1), frame_text(ledger_id), frame_i64(proposal_id),
        frame_text(target_writer_id), frame_text(writer_id), frame_i64(epoch),
        frame_i64(head_sequence), _hash32(head_hash),
    ))


def resume_statement_v1(*, ledger_id: str, halt_sequence: int, halt_hash: bytes) -> bytes:
    """Returns the bytes a witness signs to approve ending a halt (version 1)."""
    return b"".join((
        frame_text(RESUME_STATEMENT_V1), frame_text(ledger_id), frame_i64(halt_sequence),
        _hash32(halt_hash),
    ))


def statement(ceremony: Ceremony) -> bytes:
    """Returns the statement the witnesses of this ceremony sign."""
    if ceremony.kind == POLICY:
        assert ceremony.policy is not None and ceremony.policy_sequence is not None
        return policy_statement_v1(ledger_id=ceremony.ledger_id,
                                   proposal_id=ceremony.proposal_id,
                                   policy_sequence=ceremony.policy_sequence,
                                   policy=ceremony.policy)
    if ceremony.kind == FAILOVER:
        assert ceremony.target_writer_id is not None and ceremony.writer_id is not None
        assert ceremony.head_sequence is not None and ceremony.head_hash is not None
        return failover_statement_v1(
            ledger_id=ceremony.ledger_id, proposal_id=ceremony.proposal_id,
            target_writer_id=ceremony.target_writer_id, writer_id=ceremony.writer_id,
            epoch=ceremony.epoch, head_sequence=ceremony.head_sequence,
            head_hash=ceremony.head_hash)
    assert ceremony.halt_sequence is not None and ceremony.halt_hash is not None
    return resume_statement_v1(ledger_id=ceremony.ledger_id,
                               halt_sequence=ceremony.halt_sequence,
                               halt_hash=ceremony.halt_hash)


# -- applicability --------------------------------------------------------------------

#: Why a proposal cannot execute: it is executed or superseded ("closed"), the grant
#: moved since a failover proposal ("grant_moved"), the halt a resume proposal
#: would end is over ("halt_over"), or the policy a policy proposal would replace
#: is no longer in force ("policy_changed").
Obstacle = Literal["closed", "grant_moved", "halt_over", "policy_changed"]


def obstacle(ceremony: Ceremony, state: LedgerState, current_halt: int | None,
             policy_sequence: int | None = None) -> Obstacle | None:
    """Returns why the proposal no longer applies to the ledger in state, or None when it
    does; current_halt is the sequence of the ledger's newest halt event (None: never
    halted), policy_sequence that of the policy in force.

    A failover proposal applies while the grant is the one it was made against; a
    resume proposal while the ledger is halted by the halt it would end; a policy
    proposal while the policy it was made against is in force.
    """
    if ceremony.status != "open":
        return "closed"
    if ceremony.kind == POLICY:
        if ceremony.policy_sequence != policy_sequence:
            return "policy_changed"
    elif ceremony.kind == FAILOVER:
        if (state.writer_id, state.epoch) != (ceremony.writer_id, ceremony.epoch):
            return "grant_moved"
    elif not state.halted or current_halt != ceremony.halt_sequence:
        return "halt_over"
    return None


# -- counted witnesses ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalStanding:
    """What one approval is worth at a point of the chain.

    ``key`` is the registered key it names (None when unknown); ``revoked`` is true
    when that key was revoked before the point; ``signature_valid`` is None when
    the signature was not checked (a store cannot check it).
    """

    key_id: str
    key: RegisteredKey | None
    revoked: bool
    signature_valid: bool | None

    @property
    def witness_key(self) -> bool:
        return self.key is not None and self.key.purpose == "witness"

    @property
    def counts(self) -> bool:
        """True when a witness key active at the point made it, with a signature not
        known to be invalid."""
        return self.witness_key and not self.revoked and self.signature_valid is not False


def approval_standing(key_id: str, keys: Mapping[str, RegisteredKey], *, at: int | None,
                      signature: bytes | None = None,
                      content: bytes | None = None) -> ApprovalStanding:
    """Judges an approval by key_id at sequence at (None: now, when any revocation
    counts), checking its signature over content when both are given.

    A key revoked at sequence at or later was still active at that point: the
    executing event itself is at, and a revocation can only follow it.
    """
    key = keys.get(key_id)
    revoked = key is not None and key.revoked_seq is not None and (
        at is None or key.revoked_seq < at)
    valid = None
    if signature is not None and content is not None and key is not None:
        valid = signature_is_valid(key.public_key, signature, content)
    return ApprovalStanding(key_id, key, revoked, valid)


def witnesses_behind(standings: Iterable[ApprovalStanding]) -> int:
    """The number of distinct witnesses (key owners) behind the approvals that count."""
    return len({s.key.owner_id for s in standings if s.counts and s.key is not None})


# -- the chain's own record -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HaltSeen:
    """The newest halt event the chain recorded: where, its hash, and when."""

    sequence: int
    hash: bytes
    recorded_at: datetime


def governance_event_problems(
    event: HashedFields, keys: Mapping[str, RegisteredKey],
    policy: PolicyInForce | None = None, halt: HaltSeen | None = None,
) -> list[str]:
    """Checks a chained canonlog.writer_promoted, ceremony canonlog.resumed or
    canonlog.policy_changed event: every signature it carries verifies over the
    statement rebuilt from its payload, and enough witnesses signed.

    With policy (the policy in force before the event), the witnesses are its keys
    and the threshold and resume waiting period its own (halt: the newest halt before
    the event); without, the event predates policies, and its witnesses are the
    witness keys known at that point and its threshold the one it records. Returns
    the problems (none for other events).
    """
    try:
        data: dict[str, Any] = json.loads(event.payload)
        kind: CeremonyKind
        if event.event_type == "canonlog.writer_promoted":
            kind, content = FAILOVER, failover_statement_v1(
                ledger_id=event.ledger_id, proposal_id=data["proposal_id"],
                target_writer_id=data["writer_id"], writer_id=data["previous_writer_id"],
                epoch=data["previous_epoch"], head_sequence=data["previous_head_sequence"],
                head_hash=bytes.fromhex(data["previous_head_hash"]))
        elif event.event_type == "canonlog.resumed" and "statement" in data.get("evidence", {}):
            data = data["evidence"]
            kind, content = RESUME, resume_statement_v1(
                ledger_id=event.ledger_id, halt_sequence=data["halt_sequence"],
                halt_hash=bytes.fromhex(data["halt_hash"]))
        elif event.event_type == POLICY_CHANGED:
            if policy is None:
                return [f"{POLICY_CHANGED} at sequence {event.sequence}: no policy was in force"]
            kind, content = POLICY, policy_statement_v1(
                ledger_id=event.ledger_id, proposal_id=data["proposal_id"],
                policy_sequence=data["previous_policy_sequence"],
                policy=policy_from_document(data["policy"]))
        else:
            return []
        approvals = [(a["key_id"], bytes.fromhex(a["signature"])) for a in data["approvals"]]
        threshold = int(data["threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{event.event_type} at sequence {event.sequence} is malformed: {exc!r}"]
    if policy is None:
        return _legacy_problems(event, keys, approvals, content, threshold)
    problems = _policy_problems(event, policy, kind, data, halt)
    valid = set()
    for key_id, signature in approvals:
        witness = policy.policy.witness(key_id)
        if witness is None:
            problems.append(f"key {key_id} is not a witness of the policy in force at sequence "
                            f"{event.sequence} (established at sequence {policy.sequence})")
        elif not signature_is_valid(witness.public_key, signature, content):
            problems.append(f"the signature by key {key_id} at sequence {event.sequence} does "
                            "not verify")
        else:
            valid.add(key_id)
    needed = policy.policy.threshold(kind)
    if len(valid) < needed:
        problems.append(f"{event.event_type} at sequence {event.sequence} carries valid "
                        f"signatures of {len(valid)} witnesses; the policy in force needs "
                        f"{needed}")
    return problems


def _policy_problems(event: HashedFields, policy: PolicyInForce, kind: CeremonyKind,
                     data: dict[str, Any], halt: HaltSeen | None) -> list[str]:
    at = event.sequence
    if kind == POLICY and data["previous_policy_sequence"] != policy.sequence:
        return [f"{POLICY_CHANGED} at sequence {at} replaces the policy of sequence "
                f"{data['previous_policy_sequence']}, but the policy in force was established "
                f"at sequence {policy.sequence}"]
    if kind != RESUME:
        return []
    if halt is None or (data["halt_sequence"], data["halt_hash"]) != (halt.sequence,
                                                                      halt.hash.hex()):
        return [f"the resume at sequence {at} ends a halt at sequence {data['halt_sequence']} "
                "that is not the ledger's newest halt"]
    wait = policy.policy.resume_wait_seconds
    waited = event.recorded_at - halt.recorded_at
    if waited < timedelta(seconds=wait):
        return [f"the resume at sequence {at} came {waited.total_seconds():.0f}s after the "
                f"halt at sequence {halt.sequence}; the policy in force waits {wait}s"]
    return []


def _legacy_problems(event: HashedFields, keys: Mapping[str, RegisteredKey],
                     approvals: list[tuple[str, bytes]], content: bytes, threshold: int
                     ) -> list[str]:
    problems = []
    standings = [approval_standing(key_id, keys, at=event.sequence, signature=signature,
                                   content=content) for key_id, signature in approvals]
    for standing in standings:
        if not standing.witness_key or standing.revoked:
            problems.append(f"key {standing.key_id} was not an active witness key at sequence "
                            f"{event.sequence}")
        elif not standing.signature_valid:
            problems.append(f"the signature by key {standing.key_id} at sequence "
                            f"{event.sequence} does not verify")
    witnesses = witnesses_behind(standings)
    if witnesses < threshold:
        problems.append(f"{event.event_type} at sequence {event.sequence} carries valid "
                        f"signatures of {witnesses} witnesses; its threshold is {threshold}")
    return problems
