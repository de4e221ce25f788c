"""Ceremonies as the ledger records them: proposals and witnesses' approvals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

FAILOVER: Final = "failover"
RESUME: Final = "resume"

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
