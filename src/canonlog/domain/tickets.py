"""A write ticket as the fold of its chained audit events.

Each ticket has a stream of its own (``gateway-ticket/<execution id>``):
``gateway.requested`` with ``gateway.staged`` (the proposed payload, kept once so
the write can be performed after a restart; audit events carry only its SHA-256),
then ``gateway.approved`` per approval, and at most one closing event:
``gateway.rejected``, ``gateway.expired`` or ``gateway.denied`` (a denial is the
ticket's only event). ``gateway.refused`` records a refused approval or commit, once
per ticket, step, rule and subject (domain/approvals.py). ``gateway.committed``, which
names who committed, lands on the target's stream, in the same append as the write
itself. Every closing event and the commit carry the ticket's execution id in their
context, so the ledger records one outcome per execution id: whichever lands first,
the others are refused by the database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from canonlog.domain.canonical import canonical_json, parse_json
from canonlog.domain.errors import IdempotencyConflict, TamperDetected, WriteDenied
from canonlog.domain.events import RecordedEvent
from canonlog.domain.gateway import Operation, WriteCommand, parse_rfc3339

REQUESTED: Final = "gateway.requested"
STAGED: Final = "gateway.staged"
APPROVED: Final = "gateway.approved"
REJECTED: Final = "gateway.rejected"
EXPIRED: Final = "gateway.expired"
DENIED: Final = "gateway.denied"
COMMITTED: Final = "gateway.committed"
REFUSED: Final = "gateway.refused"
POLICY_LOADED: Final = "gateway.policy_loaded"
#: Every audit event type of the gateway, for the auditor's reads.
AUDIT_EVENTS: Final = frozenset({REQUESTED, APPROVED, REJECTED, EXPIRED, DENIED, COMMITTED,
                                 REFUSED, POLICY_LOADED})


class TicketStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for approvals
    APPROVED = "approved"  # ready to commit
    COMMITTED = "committed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One counted approval: who signed, with which key, and where the chain holds it."""

    approver: str
    key_id: str
    sequence: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A requested write and what happened to it so far.

    ``version`` is the ticket stream's version, the expected version of its next
    event; ``committed`` holds the committed events once found on the target stream;
    ``refusals`` the (step, kind, subject) of every refusal recorded on the ticket.
    """

    command: WriteCommand
    status: TicketStatus
    version: int
    policy_version: int
    approvals_required: int
    requested_seq: int
    requested_at: datetime
    expires_at: datetime
    approvals: tuple[ApprovalRecord, ...] = ()
    reason: str | None = None
    committed: tuple[RecordedEvent, ...] = ()
    refusals: frozenset[tuple[str, str, str]] = frozenset()

    @property
    def closed(self) -> bool:
        return self.status in (TicketStatus.REJECTED, TicketStatus.EXPIRED, TicketStatus.DENIED)

    def approved_by(self, approver: str) -> bool:
        return any(a.approver == approver for a in self.approvals)

    def summary(self) -> dict[str, Any]:
        """The ticket as the CLI and the service render it."""
        last = self.committed[0] if self.committed else None
        return {
            "ticket": self.command.execution_id, "status": self.status.value,
            **self.command.audit_fields(), "policy_version": self.policy_version,
            "approvals_required": self.approvals_required,
            "approvals": [{"approver": a.approver, "key_id": a.key_id, "sequence": a.sequence}
                          for a in self.approvals],
            "requested_seq": self.requested_seq,
            "requested_at": self.requested_at.isoformat(),
            "expires_at": self.expires_at.isoformat(), "reason": self.reason,
            "committed_seq": last.sequence if last is not None else None,
        }


def payload_of(event: RecordedEvent) -> dict[str, Any]:
    value = parse_json(event.payload, f"event {event.sequence}")
    assert isinstance(value, dict)
    return value


def fold_ticket(events: list[RecordedEvent]) -> Ticket | Denied | None:
    """Returns the ticket a ticket stream's events describe (Denied for a denial, None
    for no events). Raises TamperDetected when the events do not form a ticket."""
    if not events:
        return None
    try:
        return _fold(events)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TamperDetected(f"stream {events[0].stream_id} does not hold a ticket the "
                             f"gateway wrote: {type(exc).__name__}: {exc}") from exc


def _fold(events: list[RecordedEvent]) -> Ticket | Denied:
    first = payload_of(events[0])
    if events[0].event_type == DENIED:
        return Denied(first["kind"], first["reason"], first.get("command_sha256", ""))
    if events[0].event_type != REQUESTED or len(events) < 2 or events[1].event_type != STAGED:
        raise TamperDetected(f"stream {events[0].stream_id} does not begin with a request")
    staged = payload_of(events[1])["payload"]
    command = WriteCommand(
        first["task_id"], first["execution_id"], first["target"], Operation(first["operation"]),
        canonical_json(staged), first["summary"], first["requested_by"])
    if command.payload_sha256 != first["payload_sha256"]:
        raise TamperDetected(f"the staged payload of ticket {command.execution_id} does not "
                             "match its digest")
    required = int(first["approvals_required"])
    ticket = Ticket(
        command=command, status=TicketStatus.PENDING if required else TicketStatus.APPROVED,
        version=events[-1].stream_version, policy_version=int(first["policy_version"]),
        approvals_required=required, requested_seq=events[0].sequence,
        requested_at=events[0].recorded_at, expires_at=parse_rfc3339(first["expires_at"]))
    approvals: list[ApprovalRecord] = []
    refusals: set[tuple[str, str, str]] = set()
    status, reason = ticket.status, None
    for event in events[2:]:
        data = payload_of(event)
        if event.event_type == APPROVED:
            approvals.append(ApprovalRecord(data["approver"], data["key_id"], event.sequence,
                                            bytes.fromhex(data["signature"])))
            if len({a.approver for a in approvals}) >= required:
                status = TicketStatus.APPROVED
        elif event.event_type == REJECTED:
            status, reason = TicketStatus.REJECTED, f"rejected by {data['rejected_by']}: " \
                                                    f"{data['reason']}"
        elif event.event_type == EXPIRED:
            status, reason = TicketStatus.EXPIRED, f"expired at {data['expires_at']}"
        elif event.event_type == REFUSED:
            refusals.add((data["step"], data["kind"], data["subject"]))
    return Ticket(command=command, status=status, version=ticket.version,
                  policy_version=ticket.policy_version, approvals_required=required,
                  requested_seq=ticket.requested_seq, requested_at=ticket.requested_at,
                  expires_at=ticket.expires_at, approvals=tuple(approvals), reason=reason,
                  refusals=frozenset(refusals))


@dataclass(frozen=True, slots=True)
class Denied:
    """A denied request: the rule that refused it and the digest of the command."""

    kind: str
    reason: str
    command_sha256: str


def same_request(existing: Ticket | Denied, command: WriteCommand) -> Ticket:
    """The ticket already recorded under the command's execution id, when it is for the
    same command; raises IdempotencyConflict when it is not, WriteDenied when denied."""
    if isinstance(existing, Denied):
        if existing.command_sha256 != command.digest():
            raise IdempotencyConflict(f"execution id {command.execution_id!r} was used for "
                                      "another command")
        raise WriteDenied(existing.reason, kind=existing.kind)
    if existing.command.digest() != command.digest():
        raise IdempotencyConflict(f"execution id {command.execution_id!r} was used for "
                                  "another command")
    return existing
