"""Governance in memory: halting, keys and witnessed ceremonies.

Each method mirrors its function of sql/0001_core.sql or sql/0003_ceremonies.sql
step for step; the ceremony rules themselves are canonlog.domain.ceremony's.
canonlog.resume_v1 has no public twin here: in the database only
resume_ceremony_v1 may call it, so only resume_ceremony calls _resume.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from canonlog.domain.ceremony import (
    FAILOVER,
    FAILOVER_STATEMENT_V1,
    RESUME,
    RESUME_STATEMENT_V1,
    Approval,
    Ceremony,
    CeremonyStatus,
    approval_standing,
    obstacle,
    witnesses_behind,
)
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    CeremonyNotFound,
    InvalidEvent,
    ThresholdNotMet,
    WaitingPeriodNotOver,
)
from canonlog.domain.events import SYSTEM_STREAM, RecordedEvent, RegisteredKey, WriterGrant
from canonlog.infrastructure.memory.pgtext import storable
from canonlog.infrastructure.memory.store import (
    MAX_NAME,
    MAX_REASON,
    MemoryLedger,
    MemoryStore,
    ledger_state_of,
)


class MemoryGovernance(MemoryStore):
    """The Governance port over a MemoryStore."""

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        storable(ledger_id, reason, actor)
        if reason is None or not 1 <= len(reason) <= MAX_REASON:
            raise InvalidEvent("a halt needs a reason of 1 to 1000 characters")
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            if ledger.halted:
                return False
            event = self._system_event(ledger, "canonlog.halted",
                                       {"reason": reason, "actor": actor},
                                       ledger.writer_id or "-", ledger.epoch)
            ledger.halted, ledger.halt_reason = True, reason
            self._store(ledger, [event])
            return True

    def _resume(self, ledger: MemoryLedger, actor: str, evidence: dict[str, Any]) -> bool:
        if not ledger.halted:
            return False
        event = self._system_event(ledger, "canonlog.resumed", {
            "actor": actor, "evidence": evidence, "halt_reason": ledger.halt_reason,
        }, ledger.writer_id or "-", ledger.epoch)
        ledger.halted, ledger.halt_reason = False, None
        self._store(ledger, [event])
        return True

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        storable(ledger_id, key_id, purpose, owner_id, actor)
        if (not 1 <= len(key_id) <= MAX_NAME or not 1 <= len(owner_id) <= MAX_NAME
                or purpose not in ("agent", "witness") or len(public_key) != 32):
            raise InvalidEvent("a key needs an id and owner of 1 to 256 characters, purpose "
                               "agent or witness, and a 32-byte Ed25519 public key")
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            if key_id in ledger.keys:
                raise InvalidEvent(f"key {key_id} is already registered in ledger {ledger_id}")
            event = self._system_event(ledger, "canonlog.key_added", {
                "key_id": key_id, "purpose": purpose, "owner_id": owner_id,
                "public_key": public_key.hex(), "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            ledger.keys[key_id] = RegisteredKey(ledger_id, key_id, purpose, owner_id,
                                                bytes(public_key), event.sequence)
            return event.sequence

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        storable(ledger_id, key_id, actor, reason)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            key = ledger.keys.get(key_id)
            if key is None or key.revoked_seq is not None:
                raise InvalidEvent(f"key {key_id} is not an active key of ledger {ledger_id}")
            event = self._system_event(ledger, "canonlog.key_revoked", {
                "key_id": key_id, "actor": actor, "reason": reason,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            ledger.keys[key_id] = replace(key, revoked_seq=event.sequence)
            return event.sequence

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        storable(ledger_id, target_writer_id, actor)
        if not 1 <= len(target_writer_id) <= MAX_NAME:
            raise InvalidEvent("writer_id must be 1 to 256 characters")
        _check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            if ledger.writer_id is None:
                raise CeremonyNotApplicable(
                    f"the grant of ledger {ledger_id} was released; writer {target_writer_id} "
                    "takes it when it starts, without a ceremony")
            if ledger.writer_id == target_writer_id:
                raise CeremonyNotApplicable(
                    f"writer {target_writer_id} already holds the grant of ledger {ledger_id}")
            head = ledger.events[-1]
            proposal_id = max(ledger.ceremonies, default=0) + 1
            event = self._system_event(ledger, "canonlog.ceremony_proposed", {
                "proposal_id": proposal_id, "kind": FAILOVER, "target_writer_id": target_writer_id,
                "writer_id": ledger.writer_id, "epoch": ledger.epoch,
                "head_sequence": head.sequence, "head_hash": head.hash.hex(), "actor": actor,
            }, ledger.writer_id, ledger.epoch)
            self._store(ledger, [event])
            ledger.ceremonies[proposal_id] = Ceremony(
                ledger_id, proposal_id, FAILOVER, "open", ledger.writer_id, ledger.epoch,
                target_writer_id, head.sequence, head.hash, None, None, actor, event.sequence,
                event.recorded_at, None)
            return proposal_id

    async def propose_resume(self, ledger_id: str, actor: str) -> int:
        storable(ledger_id, actor)
        _check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            halt = _last_halt(ledger)
            if not ledger.halted or halt is None:
                raise CeremonyNotApplicable(f"ledger {ledger_id} is not halted")
            for ceremony in ledger.ceremonies.values():
                if ceremony.kind == RESUME and ceremony.halt_sequence == halt.sequence:
                    return ceremony.proposal_id
            proposal_id = max(ledger.ceremonies, default=0) + 1
            event = self._system_event(ledger, "canonlog.ceremony_proposed", {
                "proposal_id": proposal_id, "kind": RESUME, "writer_id": ledger.writer_id,
                "epoch": ledger.epoch, "halt_sequence": halt.sequence,
                "halt_hash": halt.hash.hex(), "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            ledger.ceremonies[proposal_id] = Ceremony(
                ledger_id, proposal_id, RESUME, "open", ledger.writer_id, ledger.epoch, None,
                None, None, halt.sequence, halt.hash, actor, event.sequence, event.recorded_at,
                None)
            return proposal_id

    async def approve(
        self, ledger_id: str, proposal_id: int, key_id: str, signature: bytes, actor: str
    ) -> int:
        storable(ledger_id, key_id, actor)
        if len(signature) != 64:
            raise InvalidEvent("an approval needs a 64-byte Ed25519 signature")
        _check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            ceremony = _open_ceremony(ledger, proposal_id, None)
            standing = approval_standing(key_id, ledger.keys, at=None)
            key = standing.key
            if key is None or not standing.counts:
                raise ApprovalRefused(
                    f"key {key_id} is not an active witness key of ledger {ledger_id}")
            for other in ceremony.approvals:
                if ledger.keys[other.key_id].owner_id == key.owner_id:
                    raise ApprovalRefused(
                        f"witness {key.owner_id} has already approved proposal {proposal_id} "
                        f"of ledger {ledger_id} (with key {other.key_id})")
            event = self._system_event(ledger, "canonlog.ceremony_approved", {
                "proposal_id": proposal_id, "kind": ceremony.kind, "key_id": key_id,
                "owner_id": key.owner_id, "signature": signature.hex(), "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            approval = Approval(key_id, key.owner_id, bytes(signature), actor, event.sequence)
            ledger.ceremonies[proposal_id] = replace(ceremony, approvals=tuple(
                sorted((*ceremony.approvals, approval), key=lambda a: a.key_id.encode())))
            return event.sequence

    async def execute_failover(
        self, ledger_id: str, proposal_id: int, threshold: int, actor: str
    ) -> WriterGrant:
        storable(ledger_id, actor)
        _check_threshold(threshold)
        _check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            ceremony = _open_ceremony(ledger, proposal_id, FAILOVER)
            approvals = _counted_approvals(ledger, ceremony, threshold)
            assert ceremony.target_writer_id is not None and ceremony.head_hash is not None
            epoch = ledger.epoch + 1
            event = self._system_event(ledger, "canonlog.writer_promoted", {
                "proposal_id": proposal_id, "previous_writer_id": ceremony.writer_id,
                "previous_epoch": ceremony.epoch,
                "previous_head_sequence": ceremony.head_sequence,
                "previous_head_hash": ceremony.head_hash.hex(),
                "writer_id": ceremony.target_writer_id, "epoch": epoch, "approvals": approvals,
                "threshold": threshold, "statement": FAILOVER_STATEMENT_V1,
                "actor": actor,
            }, ceremony.target_writer_id, epoch)
            self._store(ledger, [event])
            ledger.writer_id, ledger.epoch = ceremony.target_writer_id, epoch
            for other in list(ledger.ceremonies.values()):
                if other.kind == FAILOVER and other.status == "open":
                    status: CeremonyStatus = (
                        "executed" if other.proposal_id == proposal_id else "superseded")
                    ledger.ceremonies[other.proposal_id] = replace(
                        other, status=status, closed_seq=event.sequence)
            return WriterGrant(ledger_id, ceremony.target_writer_id, epoch)

    async def resume_ceremony(
        self, ledger_id: str, proposal_id: int, threshold: int, min_wait_seconds: int,
        actor: str,
    ) -> int:
        storable(ledger_id, actor)
        _check_threshold(threshold)
        if min_wait_seconds < 0:
            raise InvalidEvent("the waiting period must be 0 seconds or more")
        _check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            ceremony = _open_ceremony(ledger, proposal_id, RESUME)
            assert ceremony.halt_sequence is not None and ceremony.halt_hash is not None
            halted_at = ledger.events[ceremony.halt_sequence - 1].recorded_at
            now = self._clock()
            ready_at = halted_at + timedelta(seconds=min_wait_seconds)
            if min_wait_seconds > 0 and now < ready_at:
                micros_left = (ready_at - now) // timedelta(microseconds=1)
                left = max(1, -(-micros_left // 1_000_000))
                raise WaitingPeriodNotOver(
                    f"ledger {ledger_id} was halted at sequence {ceremony.halt_sequence}; "
                    f"resuming waits {_duration(min_wait_seconds)} after the halt, and "
                    f"{_duration(left)} remain")
            approvals = _counted_approvals(ledger, ceremony, threshold)
            self._resume(ledger, actor, {
                "proposal_id": proposal_id, "halt_sequence": ceremony.halt_sequence,
                "halt_hash": ceremony.halt_hash.hex(), "approvals": approvals,
                "threshold": threshold, "min_wait_seconds": min_wait_seconds,
                "statement": RESUME_STATEMENT_V1,
            })
            sequence = ledger.events[-1].sequence
            ledger.ceremonies[proposal_id] = replace(ceremony, status="executed",
                                                     closed_seq=sequence)
            return sequence


def _check_actor(actor: str) -> None:
    if not 1 <= len(actor) <= MAX_NAME:
        raise InvalidEvent("the actor of a ceremony step must be 1 to 256 characters")


def _check_threshold(threshold: int) -> None:
    if threshold < 1:
        raise InvalidEvent("a ceremony needs a threshold of at least 1 witness")


def _duration(seconds: int) -> str:
    """As canonlog.format_duration_v1 states a duration."""
    return f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s"


def _last_halt(ledger: MemoryLedger) -> RecordedEvent | None:
    for event in reversed(ledger.streams.get(SYSTEM_STREAM, [])):
        if event.event_type == "canonlog.halted":
            return event
    return None


def _open_ceremony(ledger: MemoryLedger, proposal_id: int, kind: str | None) -> Ceremony:
    """The checks of canonlog.open_ceremony_v1: known, of the kind, open, still applying."""
    ledger_id = ledger.ledger_id
    ceremony = ledger.ceremonies.get(proposal_id)
    if ceremony is None:
        raise CeremonyNotFound(f"ledger {ledger_id} has no proposal {proposal_id}")
    if kind is not None and ceremony.kind != kind:
        raise CeremonyNotApplicable(
            f"proposal {proposal_id} of ledger {ledger_id} is a {ceremony.kind} ceremony, "
            f"not a {kind} ceremony")
    halt = _last_halt(ledger)
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
        case "halt_over":
            raise CeremonyNotApplicable(
                f"proposal {proposal_id} of ledger {ledger_id} would end the halt at sequence "
                f"{ceremony.halt_sequence}, which is over")
    return ceremony


def _counted_approvals(
    ledger: MemoryLedger, ceremony: Ceremony, threshold: int
) -> list[dict[str, str]]:
    """The approvals by keys still active witness keys, as canonlog.counted_approvals_v1
    lists them; raises ThresholdNotMet when fewer than threshold witnesses are behind them."""
    standings = [approval_standing(a.key_id, ledger.keys, at=None) for a in ceremony.approvals]
    witnesses = witnesses_behind(standings)
    if witnesses < threshold:
        raise ThresholdNotMet(
            f"proposal {ceremony.proposal_id} of ledger {ledger.ledger_id} has approvals from "
            f"{witnesses} of the {threshold} witnesses it needs")
    return [{"key_id": a.key_id, "owner_id": a.owner_id, "signature": a.signature.hex()}
            for a, standing in zip(ceremony.approvals, standings, strict=True) if standing.counts]
