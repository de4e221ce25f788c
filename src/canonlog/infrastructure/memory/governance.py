"""Governance in memory: halting, keys and witnessed ceremonies under the policy.

Each method mirrors its function of sql/0001_core.sql, sql/0003_ceremonies.sql or
sql/0004_governance_policy.sql step for step; the ceremony rules themselves are
canonlog.domain.ceremony's and canonlog.domain.governance's.
canonlog.resume_v1 has no public twin here: in the database only
the resume ceremony may call it, so only resume_ceremony calls _resume.
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
)
from canonlog.domain.errors import (
    ApprovalRefused,
    CeremonyNotApplicable,
    InvalidEvent,
    WaitingPeriodNotOver,
)
from canonlog.domain.events import RegisteredKey, WriterGrant
from canonlog.infrastructure.memory.pgtext import storable
from canonlog.infrastructure.memory.policy import (
    MemoryPolicies,
    check_actor,
    counted_approvals,
    last_halt,
    open_ceremony,
    policy_in_force,
)
from canonlog.infrastructure.memory.store import MAX_NAME, MAX_REASON, MemoryLedger


class MemoryGovernance(MemoryPolicies):
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
        if purpose == "witness":
            raise InvalidEvent(
                f"witness keys of ledger {ledger_id} are part of its governance policy; they "
                "change only through a policy ceremony (canonlog policy propose)")
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
        async with self._lock(ledger_id):
            policy_in_force(self._existing(ledger_id))
        if not 1 <= len(target_writer_id) <= MAX_NAME:
            raise InvalidEvent("writer_id must be 1 to 256 characters")
        check_actor(actor)
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
        async with self._lock(ledger_id):
            policy_in_force(self._existing(ledger_id))
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            halt = last_halt(ledger)
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
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            in_force = policy_in_force(ledger)
            ceremony = open_ceremony(ledger, proposal_id, None, in_force)
            witness = in_force.policy.witness(key_id)
            if witness is None:
                raise ApprovalRefused(
                    f"key {key_id} is not a witness key of the policy of ledger {ledger_id}")
            if any(a.key_id == key_id for a in ceremony.approvals):
                raise ApprovalRefused(
                    f"key {key_id} has already approved proposal {proposal_id} of ledger "
                    f"{ledger_id}")
            event = self._system_event(ledger, "canonlog.ceremony_approved", {
                "proposal_id": proposal_id, "kind": ceremony.kind, "key_id": key_id,
                "owner_id": witness.owner_id, "signature": signature.hex(), "actor": actor,
            }, ledger.writer_id or "-", ledger.epoch)
            self._store(ledger, [event])
            approval = Approval(key_id, witness.owner_id, bytes(signature), actor,
                                event.sequence, witness.public_key)
            ledger.ceremonies[proposal_id] = replace(ceremony, approvals=tuple(
                sorted((*ceremony.approvals, approval), key=lambda a: a.key_id.encode())))
            return event.sequence

    async def execute_failover(self, ledger_id: str, proposal_id: int, actor: str
                               ) -> WriterGrant:
        storable(ledger_id, actor)
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            in_force = policy_in_force(ledger)
            threshold = in_force.policy.failover_threshold
            ceremony = open_ceremony(ledger, proposal_id, FAILOVER)
            approvals = counted_approvals(ledger, ceremony, in_force.policy, threshold)
            assert ceremony.target_writer_id is not None and ceremony.head_hash is not None
            epoch = ledger.epoch + 1
            event = self._system_event(ledger, "canonlog.writer_promoted", {
                "proposal_id": proposal_id, "previous_writer_id": ceremony.writer_id,
                "previous_epoch": ceremony.epoch,
                "previous_head_sequence": ceremony.head_sequence,
                "previous_head_hash": ceremony.head_hash.hex(),
                "writer_id": ceremony.target_writer_id, "epoch": epoch, "approvals": approvals,
                "threshold": threshold, "policy_sequence": in_force.sequence,
                "statement": FAILOVER_STATEMENT_V1, "actor": actor,
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

    async def resume_ceremony(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        storable(ledger_id, actor)
        check_actor(actor)
        async with self._lock(ledger_id):
            ledger = self._existing(ledger_id)
            in_force = policy_in_force(ledger)
            threshold = in_force.policy.resume_threshold
            wait = in_force.policy.resume_wait_seconds
            ceremony = open_ceremony(ledger, proposal_id, RESUME)
            assert ceremony.halt_sequence is not None and ceremony.halt_hash is not None
            halted_at = ledger.events[ceremony.halt_sequence - 1].recorded_at
            now = self._clock()
            ready_at = halted_at + timedelta(seconds=wait)
            if wait > 0 and now < ready_at:
                micros_left = (ready_at - now) // timedelta(microseconds=1)
                left = max(1, -(-micros_left // 1_000_000))
                raise WaitingPeriodNotOver(
                    f"ledger {ledger_id} was halted at sequence {ceremony.halt_sequence}; "
                    f"resuming waits {_duration(wait)} after the halt, and "
                    f"{_duration(left)} remain")
            approvals = counted_approvals(ledger, ceremony, in_force.policy, threshold)
            self._resume(ledger, actor, {
                "proposal_id": proposal_id, "halt_sequence": ceremony.halt_sequence,
                "halt_hash": ceremony.halt_hash.hex(), "approvals": approvals,
                "threshold": threshold, "min_wait_seconds": wait,
                "policy_sequence": in_force.sequence, "statement": RESUME_STATEMENT_V1,
            })
            sequence = ledger.events[-1].sequence
            ledger.ceremonies[proposal_id] = replace(ceremony, status="executed",
                                                     closed_seq=sequence)
            return sequence


def _duration(seconds: int) -> str:
    """As canonlog.format_duration_v1 states a duration."""
    return f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s"
