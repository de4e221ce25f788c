"""Governance: witnessed failover and resume ceremonies, and keys.

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

The database checks everything about a ceremony except the signatures, which it
cannot check; these functions verify each signature before it is recorded and
every recorded one again before a ceremony executes, and report_ceremony and
governance_event_problems re-check them afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import EventReader, GovernedLedger, HaltChannel
from canonlog.domain.ceremony import FAILOVER, RESUME, Approval, Ceremony
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    CeremonyNotFound,
    TamperDetected,
)
from canonlog.domain.events import RegisteredKey, WriterGrant
from canonlog.domain.hashing import HashedFields, frame_text
from canonlog.domain.signing import signature_is_valid

FAILOVER_STATEMENT_V1: Final = "canonlog/ceremony/failover/v1"
RESUME_STATEMENT_V1: Final = "canonlog/ceremony/resume/v1"


def _i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


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
        frame_text(FAILOVER_STATEMENT_V1), frame_text(ledger_id), _i64(proposal_id),
        frame_text(target_writer_id), frame_text(writer_id), _i64(epoch), _i64(head_sequence),
        _hash32(head_hash),
    ))


def resume_statement_v1(*, ledger_id: str, halt_sequence: int, halt_hash: bytes) -> bytes:
    """Returns the bytes a witness signs to approve ending a halt (version 1)."""
    return b"".join((
        frame_text(RESUME_STATEMENT_V1), frame_text(ledger_id), _i64(halt_sequence),
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
    #: Distinct witnesses (key owners) behind the approvals that count.
    witnesses: int
    threshold: int
    #: Why it cannot execute now (None when it can, waiting period aside).
    blocker: str | None
    #: Resume ceremonies: when the halt was recorded.
    halted_at: datetime | None = None

    @property
    def forged(self) -> tuple[CheckedApproval, ...]:
        return tuple(a for a in self.approvals if a.forged)

    def ready_at(self, min_wait_seconds: int) -> datetime | None:
        """When the waiting period of a resume ceremony ends, by the database's clock."""
        if self.halted_at is None:
            return None
        return self.halted_at + timedelta(seconds=min_wait_seconds)


def _check_approvals(
    ceremony: Ceremony, content: bytes, keys: Mapping[str, RegisteredKey]
) -> tuple[tuple[CheckedApproval, ...], int]:
    checked = []
    owners: set[str] = set()
    for approval in ceremony.approvals:
        key = keys.get(approval.key_id)
        problem, forged = None, False
        if key is None or key.purpose != "witness":
            problem = f"key {approval.key_id} is not a witness key"
        elif not signature_is_valid(key.public_key, approval.signature, content):
            problem, forged = f"signature by key {approval.key_id} does not verify", True
        elif key.revoked_seq is not None and (ceremony.closed_seq is None
                                              or key.revoked_seq < ceremony.closed_seq):
            problem = f"key {approval.key_id} was revoked at sequence {key.revoked_seq}"
        if problem is None:
            owners.add(key.owner_id if key is not None else approval.owner_id)
        checked.append(CheckedApproval(approval, problem, forged))
    return tuple(checked), len(owners)


async def report_ceremony(event_log: EventReader, ceremony: Ceremony, threshold: int
                          ) -> CeremonyReport:
    """Checks every signature of a ceremony and whether it could execute now."""
    ledger_id = ceremony.ledger_id
    keys = {k.key_id: k for k in await event_log.list_keys(ledger_id)}
    content = statement(ceremony)
    approvals, witnesses = _check_approvals(ceremony, content, keys)
    state = await event_log.ledger_state(ledger_id)
    blocker: str | None = None
    halted_at = None
    if ceremony.kind == RESUME and ceremony.halt_sequence is not None:
        (halt,) = await event_log.read_all(ledger_id, after=ceremony.halt_sequence - 1, limit=1)
        halted_at = halt.recorded_at
    if ceremony.status != "open":
        blocker = f"{ceremony.status} at sequence {ceremony.closed_seq}"
    elif ceremony.kind == FAILOVER and (state.writer_id, state.epoch) != (ceremony.writer_id,
                                                                          ceremony.epoch):
        blocker = (f"the grant moved to {state.writer_id or 'nobody'} at epoch {state.epoch} "
                   "since the proposal")
    elif ceremony.kind == RESUME and (not state.halted or (await _last_halt(
            event_log, ledger_id)) != ceremony.halt_sequence):
        blocker = f"the halt at sequence {ceremony.halt_sequence} is over"
    elif any(a.forged for a in approvals):
        blocker = "an approval's signature does not verify"
    elif witnesses < threshold:
        blocker = f"approved by {witnesses} of the {threshold} witnesses needed"
    return CeremonyReport(ceremony, content, approvals, witnesses, threshold, blocker, halted_at)


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

    Raises ApprovalRefused when key_id is not an active witness key of the ledger,
    the private key is not that key's, or the signature does not verify; and what
    Governance.approve raises.
    """
    if (private_key is None) == (signature is None):
        raise ValueError("approve needs exactly one of private_key and signature")
    ceremony = await _ceremony(event_log, ledger_id, proposal_id)
    keys = {k.key_id: k for k in await event_log.list_keys(ledger_id)}
    key = keys.get(key_id)
    if key is None or key.purpose != "witness" or key.revoked_seq is not None:
        raise ApprovalRefused(f"key {key_id} is not an active witness key of ledger {ledger_id}")
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
                           threshold: int, actor: str) -> WriterGrant:
    """Re-verifies every approval, then moves the grant (Governance.execute_failover);
    raises TamperDetected when a recorded signature does not verify."""
    ceremony = await _ceremony(event_log, ledger_id, proposal_id)
    _refuse_forged(await report_ceremony(event_log, ceremony, threshold))
    return await event_log.execute_failover(ledger_id, proposal_id, threshold, actor)


async def execute_resume(
    event_log: GovernedLedger, ledger_id: str, threshold: int, min_wait_seconds: int, actor: str,
    channels: Sequence[HaltChannel] = (),
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
    _refuse_forged(await report_ceremony(event_log, ceremony, threshold))
    sequence = await event_log.resume_ceremony(ledger_id, ceremony.proposal_id, threshold,
                                               min_wait_seconds, actor)
    for channel in channels:
        await channel.announce(ledger_id, None)
    return sequence


# -- checking the chain's own record -----------------------------------------------------


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
    owners = set()
    for key_id, signature in approvals:
        key = keys.get(key_id)
        if key is None or key.purpose != "witness" or (
                key.revoked_seq is not None and key.revoked_seq < event.sequence):
            problems.append(f"key {key_id} was not an active witness key at sequence "
                            f"{event.sequence}")
        elif not signature_is_valid(key.public_key, signature, content):
            problems.append(f"the signature by key {key_id} at sequence {event.sequence} "
                            "does not verify")
        else:
            owners.add(key.owner_id)
    if len(owners) < threshold:
        problems.append(f"{event.event_type} at sequence {event.sequence} carries valid "
                        f"signatures of {len(owners)} witnesses; its threshold is {threshold}")
    return problems
