"""The request and response bodies of the HTTP API, as pydantic models.

Requests refuse unknown fields. Hashes, signatures and ids of keys are lowercase
hex; times are RFC 3339 in UTC; payloads and metadata are JSON objects (their
canonical bytes, which the hash covers, are the canonical JSON of that object).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from canonlog.application.ceremonies import CeremonyReport
from canonlog.application.ports import AppendResult
from canonlog.domain.canonical import INT_MAX
from canonlog.domain.ceremony import CeremonyKind, CeremonyStatus
from canonlog.domain.events import Head, LedgerState, RecordedEvent


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(_Request):
    """One event to append."""

    type: str = Field(description="the event type", min_length=1, max_length=256)
    payload: dict[str, Any] = Field(description="a JSON object; stored in canonical form")
    metadata: dict[str, Any] | None = Field(default=None, description="a JSON object, or none")
    id: uuid.UUID | None = Field(default=None, description="the event id; assigned when absent")


class AppendIn(_Request):
    """Events appended atomically to one stream, under one expected version."""

    events: list[EventIn] = Field(min_length=1)
    expected_version: Annotated[int, Field(ge=1, le=INT_MAX)] | Literal[
            "any", "no_stream", "stream_exists"] = Field(
        default="any",
        description="the stream's current version (its last event's), or any, no_stream, "
                    "stream_exists")
    task_id: str | None = Field(default=None, min_length=1, max_length=256)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=256)
    causation_id: str | None = Field(default=None, min_length=1, max_length=256)


class HaltIn(_Request):
    """Why the ledger is halted; recorded in the chain."""

    reason: str = Field(min_length=1, max_length=1000)


class EventOut(BaseModel):
    """An event as the ledger recorded it, with everything its hash covers."""

    ledger_id: str
    sequence: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
    task_id: str | None
    execution_id: str | None
    correlation_id: str | None
    causation_id: str | None
    agent_id: str | None
    writer_id: str
    epoch: int
    writer_time: datetime | None
    recorded_at: datetime
    hash_version: int
    prev_hash: str
    hash: str
    signing_key_id: str | None
    signature: str | None

    @classmethod
    def of(cls, event: RecordedEvent) -> EventOut:
        return cls(
            ledger_id=event.ledger_id, sequence=event.sequence, event_id=event.event_id,
            stream_id=event.stream_id, stream_version=event.stream_version,
            event_type=event.event_type, payload=orjson.loads(event.payload),
            metadata=orjson.loads(event.metadata), task_id=event.task_id,
            execution_id=event.execution_id, correlation_id=event.correlation_id,
            causation_id=event.causation_id, agent_id=event.agent_id, writer_id=event.writer_id,
            epoch=event.epoch, writer_time=event.writer_time, recorded_at=event.recorded_at,
            hash_version=event.hash_version, prev_hash=event.prev_hash.hex(), hash=event.hash.hex(),
            signing_key_id=event.signing_key_id,
            signature=None if event.signature is None else event.signature.hex(),
        )


class ReceiptEvent(BaseModel):
    event_id: uuid.UUID
    sequence: int
    stream_version: int
    hash: str


class AppendReceipt(BaseModel):
    """What an append recorded. A retry with the same Idempotency-Key gets the same receipt."""

    ledger_id: str
    stream_id: str
    sequence: int = Field(description="the sequence of the append's last event")
    stream_version: int = Field(description="the stream's version after the append")
    hash: str = Field(description="the hash of the append's last event")
    events: list[ReceiptEvent]

    @classmethod
    def of(cls, result: AppendResult) -> AppendReceipt:
        last = result.events[-1]
        return cls(
            ledger_id=last.ledger_id, stream_id=last.stream_id, sequence=last.sequence,
            stream_version=last.stream_version, hash=last.hash.hex(),
            events=[ReceiptEvent(event_id=e.event_id, sequence=e.sequence,
                                 stream_version=e.stream_version, hash=e.hash.hex())
                    for e in result.events],
        )


class StreamPage(BaseModel):
    ledger_id: str
    stream_id: str
    events: list[EventOut]
    next_from_version: int | None = Field(description="where the next page starts; none at the end")


class EventPage(BaseModel):
    ledger_id: str
    events: list[EventOut]
    next_after: int = Field(description="pass as `after` to read the next page")
    more: bool = Field(description="true when the page was full: more events may follow")


class HeadOut(BaseModel):
    ledger_id: str
    sequence: int
    hash: str

    @classmethod
    def of(cls, head: Head) -> HeadOut:
        return cls(ledger_id=head.ledger_id, sequence=head.sequence, hash=head.hash.hex())


class LedgerStateOut(BaseModel):
    """The grant and halt flag as the database holds them, and this service's writer."""

    ledger_id: str
    grant_writer_id: str | None
    grant_epoch: int
    halted: bool
    halt_reason: str | None
    writer_id: str
    writer_state: str

    @classmethod
    def of(cls, state: LedgerState, writer_id: str, writer_state: str) -> LedgerStateOut:
        return cls(ledger_id=state.ledger_id, grant_writer_id=state.writer_id,
                   grant_epoch=state.epoch, halted=state.halted, halt_reason=state.halt_reason,
                   writer_id=writer_id, writer_state=writer_state)


class HaltOut(BaseModel):
    ledger_id: str
    halted: bool
    recorded: bool = Field(description="false when the ledger was halted already")
    halt_reason: str | None


class CheckpointOut(BaseModel):
    """A signed checkpoint: what it vouches for, who signed it, and whether a trusted key did."""

    ledger_id: str
    origin: str
    sequence: int
    head_hash: str
    time: datetime
    signed_by: list[str]
    cosigned_by: list[str]
    trusted: bool
    problem: str | None


class CheckpointList(BaseModel):
    ledger_id: str
    sequences: list[int] = Field(description="published checkpoints, newest first")


class ChainBreakOut(BaseModel):
    sequence: int
    kind: str
    message: str
    expected: str | None
    found: str | None


class VerificationOut(BaseModel):
    """A verification run: running, or finished with its report."""

    id: str
    ledger_id: str
    status: Literal["running", "passed", "failed", "error"]
    started_at: datetime
    finished_at: datetime | None = None
    events_checked: int | None = None
    last_sequence: int | None = None
    head_hash: str | None = None
    breaks_total: int | None = None
    checkpoints_checked: int | None = Field(
        default=None, description="trusted checkpoints the store was compared with")
    uncovered_events: int | None = Field(
        default=None, description="events after the newest trusted checkpoint")
    breaks: list[ChainBreakOut] = Field(default_factory=list)
    summary: str | None = None


class VerificationList(BaseModel):
    """The verification runs the service remembers, newest first."""

    ledger_id: str
    runs: list[VerificationOut]


class FailoverIn(_Request):
    """Proposes moving the ledger's grant to another writer."""

    target_writer_id: str = Field(min_length=1, max_length=256)


class ApprovalIn(_Request):
    """A witness's approval: its key id and its Ed25519 signature, made offline, over the
    ceremony's statement (the `statement` of the ceremony, hex)."""

    key_id: str = Field(min_length=1, max_length=256)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$", description="64 bytes, lowercase hex")


class ApprovalOut(BaseModel):
    key_id: str
    owner_id: str = Field(description="the witness who owns the key")
    approved_by: str
    approved_seq: int
    signature: str
    counts: bool = Field(description="the signature verifies under a witness key not revoked")
    problem: str | None


class CeremonyOut(BaseModel):
    """A failover or resume ceremony with its approvals, checked against the ledger as it is now."""

    ledger_id: str
    proposal_id: int
    kind: CeremonyKind
    status: CeremonyStatus
    writer_id: str | None = Field(description="the grant's writer when proposed")
    epoch: int
    target_writer_id: str | None
    head_sequence: int | None
    head_hash: str | None
    halt_sequence: int | None
    halt_hash: str | None
    proposed_by: str
    proposed_seq: int
    proposed_at: datetime
    closed_seq: int | None
    policy_sequence: int | None = Field(
        description="the sequence of the governance policy in force when proposed")
    statement: str = Field(description="the bytes each witness signs, hex")
    approvals: list[ApprovalOut]
    witnesses: int = Field(description="distinct witnesses behind the approvals that count")
    threshold: int
    blocker: str | None = Field(description="why it cannot execute now; null when it can")

    @classmethod
    def of(cls, report: CeremonyReport) -> CeremonyOut:
        c = report.ceremony
        approvals = [ApprovalOut(key_id=a.approval.key_id, owner_id=a.approval.owner_id,
                                 approved_by=a.approval.approved_by,
                                 approved_seq=a.approval.approved_seq,
                                 signature=a.approval.signature.hex(), counts=a.problem is None,
                                 problem=a.problem) for a in report.approvals]
        return cls(
            ledger_id=c.ledger_id, proposal_id=c.proposal_id, kind=c.kind, status=c.status,
            writer_id=c.writer_id, epoch=c.epoch, target_writer_id=c.target_writer_id,
            head_sequence=c.head_sequence, head_hash=c.head_hash.hex() if c.head_hash else None,
            halt_sequence=c.halt_sequence, halt_hash=c.halt_hash.hex() if c.halt_hash else None,
            proposed_by=c.proposed_by, proposed_seq=c.proposed_seq, proposed_at=c.proposed_at,
            closed_seq=c.closed_seq, policy_sequence=c.policy_sequence,
            statement=report.statement.hex(), approvals=approvals,
            witnesses=report.witnesses, threshold=report.threshold, blocker=report.blocker)


class CeremonyList(BaseModel):
    ledger_id: str
    ceremonies: list[CeremonyOut]


class HealthOut(BaseModel):
    status: Literal["ok", "ready"]
    checks: dict[str, str] = Field(default_factory=dict)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
