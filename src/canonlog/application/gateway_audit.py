"""The auditor's read of the gateway: every decision from the chain alone.

audit_trail reads the chain (the same events `canonlog verify` recomputes) and
returns the gateway's audit events with the facts they carry, so "who approved
what, under which policy version" is answered without trusting any other store:
each ``gateway.approved`` names the approver, their key and the policy version the
ticket was requested under, each ``gateway.committed`` who committed, each
``gateway.refused`` the step and rule that refused it, and each
``gateway.policy_loaded`` the document that version stands for (by its SHA-256).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from canonlog.application.ports import EventReader
from canonlog.domain.events import RecordedEvent
from canonlog.domain.gateway import POLICY_STREAM, recorded_execution_id, ticket_stream
from canonlog.domain.tickets import AUDIT_EVENTS, POLICY_LOADED, payload_of

_PAGE: Final = 1000
#: The facts of an audit event's payload an audit entry shows (never a payload itself).
_FACTS: Final = ("target", "operation", "summary", "requested_by", "payload_sha256",
                 "policy_version", "approver", "key_id", "roles", "approvers", "rejected_by",
                 "reason", "kind", "expires_at", "sha256", "loaded_by", "committed_by", "step",
                 "subject", "by")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit event: where the chain holds it, what it records, and its facts."""

    sequence: int
    recorded_at: datetime
    event_type: str
    stream_id: str
    task_id: str | None
    execution_id: str | None
    facts: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "recorded_at": self.recorded_at.isoformat(),
                "event_type": self.event_type, "stream_id": self.stream_id,
                "task_id": self.task_id, "execution_id": self.execution_id, **self.facts}

    def line(self) -> str:
        """One line for a terminal: sequence, time, event, task, execution and the facts
        that answer who did what under which policy version."""
        kind = self.event_type.removeprefix("gateway.")
        shown = " ".join(f"{k}={v}" for k, v in self.facts.items()
                         if k in ("target", "operation", "approver", "key_id", "policy_version",
                                  "reason", "kind", "sha256", "loaded_by", "approvers",
                                  "committed_by", "step", "by"))
        return (f"{self.sequence:>8} {self.recorded_at.isoformat()} {kind:<13} "
                f"{self.task_id or '-'} {self.execution_id or '-'} {shown}")


def audit_entry(event: RecordedEvent) -> AuditEntry:
    data = payload_of(event)
    return AuditEntry(event.sequence, event.recorded_at, event.event_type, event.stream_id,
                      data.get("task_id", event.task_id),
                      data.get("execution_id", event.execution_id),
                      {k: data[k] for k in _FACTS if k in data})


async def audit_trail(reader: EventReader, ledger_id: str, *, task_id: str | None = None,
                      execution_id: str | None = None, since: datetime | None = None
                      ) -> list[AuditEntry]:
    """Returns the gateway's audit events of the ledger in sequence order: those of
    task_id and execution_id when given, recorded at or after since, and every policy
    version (policy versions belong to no task). With execution_id, reads only the
    ticket's stream, the request recorded under its execution id (the commit) and the
    policy versions; otherwise the whole chain."""
    entries: list[AuditEntry] = []

    def take(events: list[RecordedEvent]) -> None:
        for event in events:
            if event.event_type not in AUDIT_EVENTS:
                continue
            if since is not None and event.recorded_at < since:
                continue
            entry = audit_entry(event)
            if event.event_type != POLICY_LOADED and (
                    (task_id is not None and entry.task_id != task_id)
                    or (execution_id is not None and entry.execution_id != execution_id)):
                continue
            entries.append(entry)

    if execution_id is not None:
        found = {e.sequence: e for e in (
            *await reader.read_stream(ledger_id, ticket_stream(execution_id)),
            *await reader.read_execution(ledger_id, recorded_execution_id(execution_id)),
            *await reader.read_stream(ledger_id, POLICY_STREAM))}
        take(sorted(found.values(), key=lambda e: e.sequence))
        return entries
    after = 0
    while True:
        page = await reader.read_all(ledger_id, after=after, limit=_PAGE)
        take(page)
        if len(page) < _PAGE:
            return entries
        after = page[-1].sequence
