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

The rules here are written once and used by every party that judges a
ceremony: the in-memory store (as sql/0003_ceremonies.sql enforces them in
PostgreSQL), the application's ceremony reports and the verifier, which checks
the chained outcome. Each party words its own messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from canonlog.domain.events import LedgerState, RegisteredKey
from canonlog.domain.hashing import HashedFields, frame_i64, frame_text
from canonlog.domain.signing import signature_is_valid

FAILOVER: Final = "failover"
RESUME: Final = "resume"
FAILOVER_STATEMENT_V1: Final = "canonlog/ceremony/failover/v1"
RESUME_STATEMENT_V1: Final = "canonlog/ceremony/resume/v1"

CeremonyKind = Literal["failover", "resume"]
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


@dataclass(frozen=True, slots=True)
class Ceremony:
    """A proposal to fail over (move the grant to target_writer_id) or to resume a halt.

    writer_id and epoch are the grant when it was proposed. A failover proposal
    holds the head at that time (head_sequence, head_hash); a resume proposal the
    halt event it would end (halt_sequence, halt_hash).
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
#: moved since a failover proposal ("grant_moved"), or the halt a resume proposal
#: would end is over ("halt_over").
Obstacle = Literal["closed", "grant_moved", "halt_over"]


def obstacle(ceremony: Ceremony, state: LedgerState, current_halt: int | None) -> Obstacle | None:
    """Returns why the proposal no longer applies to the ledger in state, or None when it
    does; current_halt is the sequence of the ledger's newest halt event (None: never halted).

    A failover proposal applies while the grant is the one it was made against; a
    resume proposal while the ledger is halted by the halt it would end.
    """
    if ceremony.status != "open":
        return "closed"
    if ceremony.kind == FAILOVER:
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


def governance_event_problems(
    event: HashedFields, keys: Mapping[str, RegisteredKey]
) -> list[str]:
    """Checks a chained canonlog.writer_promoted or ceremony canonlog.resumed event on its
    own: every signature it carries verifies over the statement rebuilt from its payload,
    by a witness key known at that point of the chain, and enough distinct witnesses
    signed. Returns the problems (none for other events)."""
    try:
        data: dict[str, Any] = json.loads(event.payload)
        if event.event_type == "canonlog.writer_promoted":
            content = failover_statement_v1(
                ledger_id=event.ledger_id, proposal_id=data["proposal_id"],
                target_writer_id=data["writer_id"], writer_id=data["previous_writer_id"],
                epoch=data["previous_epoch"], head_sequence=data["previous_head_sequence"],
                head_hash=bytes.fromhex(data["previous_head_hash"]))
        elif event.event_type == "canonlog.resumed" and "statement" in data.get("evidence", {}):
            data = data["evidence"]
            content = resume_statement_v1(
                ledger_id=event.ledger_id, halt_sequence=data["halt_sequence"],
                halt_hash=bytes.fromhex(data["halt_hash"]))
        else:
            return []
        approvals = [(a["key_id"], bytes.fromhex(a["signature"])) for a in data["approvals"]]
        threshold = int(data["threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{event.event_type} at sequence {event.sequence} is malformed: {exc!r}"]
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
