"""The EventLog in memory, held to the same rules as the PostgreSQL functions.

Each method mirrors one function of sql/0001_core.sql, sql/0002_append_path.sql or
sql/0003_ceremonies.sql,
step for step and in the same order, so a refusal here is the refusal PostgreSQL
would give, with the same error and message. Nothing is persisted.

What the runtime roles may not call has no public method either: as the database
lets no role but its owner execute canonlog.resume_v1, a halted ledger resumes here
only through its ceremony (propose_resume, approve, resume_ceremony).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from canonlog.application.ports import AppendOutcome, AppendResult
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
    ConcurrencyConflict,
    GrantUnavailable,
    IdempotencyConflict,
    InvalidEvent,
    LedgerNotFound,
    StaleWriter,
    StorageError,
    SystemHalted,
    ThresholdNotMet,
    WaitingPeriodNotOver,
)
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
    SYSTEM_STREAM,
    SYSTEM_STREAM_PREFIX,
    AppendRequest,
    Head,
    LedgerState,
    NewEvent,
    RecordedEvent,
    RegisteredKey,
    WriterGrant,
    expected_version_code,
)
from canonlog.domain.hashing import event_hash_v1, request_digest_v1

_MAX_NAME = 256
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class _Execution:
    digest: bytes
    events: tuple[RecordedEvent, ...]


@dataclass(slots=True)
class _Ledger:
    ledger_id: str
    writer_id: str | None = None
    epoch: int = 0
    halted: bool = False
    halt_reason: str | None = None
    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    executions: dict[str, _Execution] = field(default_factory=dict)
    keys: dict[str, RegisteredKey] = field(default_factory=dict)
    ceremonies: dict[int, Ceremony] = field(default_factory=dict)


class MemoryEventLog:
    """EventLog in process memory; see the EventLog port for the contract."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ledgers: dict[str, _Ledger] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Event ids are unique across ledgers, as the events_event_id_key constraint makes them.
        self._event_ids: set[uuid.UUID] = set()
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _lock(self, ledger_id: str) -> asyncio.Lock:
        # Stands in for the transaction-scoped advisory lock of lock_ledger_v1: one
        # writing coroutine per ledger at a time. The critical sections do not await
        # today, but the lock keeps that serialisation explicit rather than incidental.
        self._check_open()
        return self._locks.setdefault(ledger_id, asyncio.Lock())

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the in-memory event log is closed")

    def _now(self, previous: datetime | None) -> datetime:
        """Authority time: the clock, but never earlier than the previous event."""
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        now = now.astimezone(UTC)
        return now if previous is None else max(now, previous)

    def _existing(self, ledger_id: str) -> _Ledger:
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            raise LedgerNotFound(f"ledger {ledger_id} does not exist")
        return ledger

    # -- governance ------------------------------------------------------------

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        _storable(ledger_id, writer_id)
        if not 1 <= len(writer_id) <= _MAX_NAME:
            raise InvalidEvent("writer_id must be 1 to 256 characters")
        async with self._lock(ledger_id):
            ledger = self._ledgers.get(ledger_id)
            if ledger is None:
                if not 1 <= len(ledger_id) <= _MAX_NAME:
                    raise InvalidEvent("ledger_id must be 1 to 256 characters")
                ledger = _Ledger(ledger_id)
                kind = "genesis"
            elif ledger.halted:
                raise _halted(ledger)
            elif ledger.writer_id is None:
                kind = "hand-over"
            elif ledger.writer_id == writer_id:
                kind = "restart"
            else:
                raise GrantUnavailable(
                    f"ledger {ledger_id} is granted to writer {ledger.writer_id} at epoch "
                    f"{ledger.epoch}; a different writer takes over only after a clean "
                    "hand-over or a witnessed failover ceremony"
                )
            epoch = ledger.epoch + 1
            event = self._system_event(ledger, "canonlog.writer_granted", {
                "writer_id": writer_id, "epoch": epoch, "kind": kind,
                "previous_writer_id": ledger.writer_id, "previous_epoch": ledger.epoch,
            }, writer_id, epoch)
            self._ledgers[ledger_id] = ledger
            ledger.writer_id, ledger.epoch = writer_id, epoch
            self._store(ledger, [event])
            return WriterGrant(ledger_id, writer_id, epoch)

    async def release_grant(self, grant: WriterGrant) -> None:
        _storable(grant.ledger_id, grant.writer_id)
        async with self._lock(grant.ledger_id):
            ledger = self._existing(grant.ledger_id)
            _check_grant(ledger, grant.writer_id, grant.epoch)
            if ledger.halted:
                raise _halted(ledger)
            event = self._system_event(ledger, "canonlog.writer_released", {
                "writer_id": grant.writer_id, "epoch": grant.epoch,
            }, grant.writer_id, grant.epoch)
            ledger.writer_id = None
            self._store(ledger, [event])

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        _storable(ledger_id, reason, actor)
        if reason is None or not 1 <= len(reason) <= _MAX_REASON:
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

    # canonlog.resume_v1 has no public twin here: in the database only
    # resume_ceremony_v1 may call it, so only resume_ceremony calls _resume.
    def _resume(self, ledger: _Ledger, actor: str, evidence: dict[str, Any]) -> bool:
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
        _storable(ledger_id, key_id, purpose, owner_id, actor)
        if (not 1 <= len(key_id) <= _MAX_NAME or not 1 <= len(owner_id) <= _MAX_NAME
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
        _storable(ledger_id, key_id, actor, reason)
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

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        self._check_open()
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            return []
        return sorted(ledger.keys.values(), key=lambda k: k.added_seq)

    # -- ceremonies (sql/0003_ceremonies.sql) --------------------------------------

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        _storable(ledger_id, target_writer_id, actor)
        if not 1 <= len(target_writer_id) <= _MAX_NAME:
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
        _storable(ledger_id, actor)
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
        _storable(ledger_id, key_id, actor)
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
        _storable(ledger_id, actor)
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
        _storable(ledger_id, actor)
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

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        self._check_open()
        _storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            return []
        return [c for number, c in sorted(ledger.ceremonies.items())
                if proposal_id is None or number == proposal_id]

    def _system_event(
        self, ledger: _Ledger, event_type: str, payload: dict[str, Any], writer_id: str, epoch: int
    ) -> RecordedEvent:
        """The next event of the "$ledger" stream, as append_system_v1 builds it.

        Callers build it before changing the ledger, so a failure changes nothing.
        """
        last = ledger.events[-1] if ledger.events else None
        return _sealed(RecordedEvent(
            ledger_id=ledger.ledger_id, sequence=len(ledger.events) + 1, event_id=uuid.uuid4(),
            stream_id=SYSTEM_STREAM, stream_version=len(ledger.streams.get(SYSTEM_STREAM, ())) + 1,
            event_type=event_type, payload=canonical_jsonb(payload).encode("utf-8"), metadata=b"{}",
            task_id=None, execution_id=None, correlation_id=None, causation_id=None,
            agent_id=None, writer_id=writer_id, epoch=epoch, writer_time=None,
            recorded_at=self._now(last.recorded_at if last else None),
            hash_version=HASH_VERSION, prev_hash=last.hash if last else GENESIS_HASH, hash=b"",
        ))

    def _store(self, ledger: _Ledger, events: list[RecordedEvent]) -> None:
        for event in events:
            ledger.events.append(event)
            ledger.streams.setdefault(event.stream_id, []).append(event)
            self._event_ids.add(event.event_id)

    # -- appends ---------------------------------------------------------------

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        if not requests:
            return []
        codes = [expected_version_code(r.expected_version) for r in requests]
        for r in requests:
            c = r.context
            _storable(grant.ledger_id, grant.writer_id, r.stream_id, c.task_id, c.execution_id,
                      c.correlation_id, c.causation_id, c.agent_id,
                      *(e.event_type for e in r.events))
        if any(not r.events for r in requests):
            raise InvalidEvent("append_v1 arrays disagree in length, or a request has no events")
        async with self._lock(grant.ledger_id):
            ledger = self._existing(grant.ledger_id)
            if ledger.halted:
                raise _halted(ledger)
            _check_grant(ledger, grant.writer_id, grant.epoch)
            events = [e for r in requests for e in r.events]
            for number, event in enumerate(events, 1):
                if not (_is_json_object(event.payload) and _is_json_object(event.metadata)):
                    raise InvalidEvent(f"event {number} of the batch: payload and metadata "
                                       "must be JSON objects")
            return self._append_checked(ledger, grant, requests, codes)

    def _append_checked(
        self, ledger: _Ledger, grant: WriterGrant, requests: Sequence[AppendRequest],
        codes: list[int | None],
    ) -> list[AppendOutcome]:
        """The per-request loop of append_v1, run once the whole batch is allowed."""
        last = ledger.events[-1] if ledger.events else None
        now = self._now(last.recorded_at if last else None)
        sequence = len(ledger.events)
        prev_hash = last.hash if last else GENESIS_HASH
        versions: dict[str, int] = {}
        executions: dict[str, _Execution] = {}
        staged: list[RecordedEvent] = []
        staged_ids: set[uuid.UUID] = set()
        outcomes: list[AppendOutcome] = []
        for request, code in zip(requests, codes, strict=True):
            problem = self._problem(ledger, request, staged_ids)
            if problem is not None:
                outcomes.append(InvalidEvent(problem))
                continue
            context, stream = request.context, request.stream_id
            execution_id, digest = context.execution_id, b""
            if execution_id is not None:
                digest = request_digest_v1(
                    stream, context.task_id, context.correlation_id, context.causation_id,
                    context.agent_id,
                    [(e.event_type, e.payload, e.metadata) for e in request.events],
                )
                known = executions.get(execution_id) or ledger.executions.get(execution_id)
                if known is not None:
                    outcomes.append(AppendResult(known.events, replayed=True)
                                    if known.digest == digest else IdempotencyConflict(
                        f"execution id {execution_id!r} was already used for a different request"
                    ))
                    continue
            current = versions.get(stream, len(ledger.streams.get(stream, ())))
            if code is not None and ((code == -1 and current == 0)
                                     or (code >= 0 and current != code)):
                outcomes.append(ConcurrencyConflict(
                    f"stream {stream!r} is at version {current}, expected {_describe(request)}",
                    stream_id=stream, expected=request.expected_version, actual=current,
                ))
                continue
            recorded = []
            for event in request.events:
                sequence, current = sequence + 1, current + 1
                if event.event_id is not None:
                    staged_ids.add(event.event_id)
                recorded.append(_sealed(RecordedEvent(
                    ledger_id=ledger.ledger_id, sequence=sequence,
                    event_id=uuid.uuid4() if event.event_id is None else event.event_id,
                    stream_id=stream,
                    stream_version=current, event_type=event.event_type, payload=event.payload,
                    metadata=event.metadata, task_id=context.task_id, execution_id=execution_id,
                    correlation_id=context.correlation_id, causation_id=context.causation_id,
                    agent_id=context.agent_id, writer_id=grant.writer_id, epoch=grant.epoch,
                    writer_time=_timestamptz(context.writer_time), recorded_at=now,
                    hash_version=HASH_VERSION, prev_hash=prev_hash, hash=b"",
                    signing_key_id=event.signing_key_id, signature=event.signature,
                )))
                prev_hash = recorded[-1].hash
            versions[stream] = current
            staged += recorded
            result = AppendResult(tuple(recorded))
            if execution_id is not None:
                executions[execution_id] = _Execution(digest, result.events)
            outcomes.append(result)
        # Only now, with every outcome decided, does anything reach the ledger.
        self._store(ledger, staged)
        ledger.executions.update(executions)
        return outcomes

    def _problem(
        self, ledger: _Ledger, request: AppendRequest, staged_ids: set[uuid.UUID]
    ) -> str | None:
        """The reason append_v1 gives for an 'invalid' request, or None."""
        stream, context = request.stream_id, request.context
        if not 1 <= len(stream) <= _MAX_NAME:
            return "stream_id must be 1 to 256 characters"
        if stream.startswith(SYSTEM_STREAM_PREFIX):
            return f"stream_id {stream} is reserved for the ledger's own events"
        ids = (context.task_id, context.execution_id, context.correlation_id,
               context.causation_id, context.agent_id)
        if any(x is not None and not 1 <= len(x) <= _MAX_NAME for x in ids):
            return ("task, execution, correlation, causation and agent ids "
                    "must be 1 to 256 characters")
        in_request: set[uuid.UUID] = set()
        for event in request.events:
            if not 1 <= len(event.event_type) <= _MAX_NAME:
                return "event_type must be 1 to 256 characters"
            event_id = event.event_id
            if event_id is not None and (
                event_id in staged_ids or event_id in in_request or event_id in self._event_ids
            ):
                return f"event id {event_id} is already recorded"
            if event_id is not None:
                in_request.add(event_id)
            problem = _signature_problem(ledger, event, context.agent_id)
            if problem is not None:
                return problem
        return None

    # -- reads -----------------------------------------------------------------

    async def read_stream(
        self, ledger_id: str, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        self._check_open()
        _storable(ledger_id, stream_id)
        ledger = self._ledgers.get(ledger_id)
        events = ledger.streams.get(stream_id, []) if ledger else []
        start = max(from_version, 1) - 1
        return events[start:] if limit is None else events[start:start + _limit(limit)]

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        self._check_open()
        _storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        start = max(after, 0)
        return ledger.events[start:start + _limit(limit)] if ledger else []

    async def head(self, ledger_id: str) -> Head:
        self._check_open()
        _storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        if ledger is None or not ledger.events:
            return Head(ledger_id, 0, GENESIS_HASH)
        return Head(ledger_id, ledger.events[-1].sequence, ledger.events[-1].hash)

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        self._check_open()
        _storable(ledger_id)
        ledger = self._existing(ledger_id)
        return _state(ledger)


def _signature_problem(ledger: _Ledger, event: NewEvent, agent_id: str | None) -> str | None:
    """The signature checks of append_v1: shape, and the key registered to the agent."""
    if (event.signing_key_id is None) != (event.signature is None):
        return "a signature needs its signing key id, and a key id its signature"
    if event.signature is None or event.signing_key_id is None:
        return None
    if len(event.signature) != 64 or event.event_id is None or agent_id is None:
        return "a signed event needs a 64-byte Ed25519 signature, an event id and an agent id"
    key = ledger.keys.get(event.signing_key_id)
    if (key is None or key.purpose != "agent" or key.owner_id != agent_id
            or key.revoked_seq is not None):
        return f"signing key {event.signing_key_id} is not an active key of agent {agent_id}"
    return None


def _check_actor(actor: str) -> None:
    if not 1 <= len(actor) <= _MAX_NAME:
        raise InvalidEvent("the actor of a ceremony step must be 1 to 256 characters")


def _check_threshold(threshold: int) -> None:
    if threshold < 1:
        raise InvalidEvent("a ceremony needs a threshold of at least 1 witness")


def _duration(seconds: int) -> str:
    """As canonlog.format_duration_v1 states a duration."""
    return f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s"


def _last_halt(ledger: _Ledger) -> RecordedEvent | None:
    for event in reversed(ledger.streams.get(SYSTEM_STREAM, [])):
        if event.event_type == "canonlog.halted":
            return event
    return None


def _open_ceremony(ledger: _Ledger, proposal_id: int, kind: str | None) -> Ceremony:
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
    match obstacle(ceremony, _state(ledger), halt.sequence if halt else None):
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
    ledger: _Ledger, ceremony: Ceremony, threshold: int
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


def _state(ledger: _Ledger) -> LedgerState:
    return LedgerState(ledger.ledger_id, ledger.writer_id, ledger.epoch, ledger.halted,
                       ledger.halt_reason)


def _sealed(event: RecordedEvent) -> RecordedEvent:
    """Returns the event with its hash, computed over every other field."""
    return replace(event, hash=event_hash_v1(event))


def _halted(ledger: _Ledger) -> SystemHalted:
    return SystemHalted(f"ledger {ledger.ledger_id} is halted: {ledger.halt_reason}",
                        reason=ledger.halt_reason)


def _check_grant(ledger: _Ledger, writer_id: str, epoch: int) -> None:
    if ledger.writer_id != writer_id or ledger.epoch != epoch:
        raise StaleWriter(
            f"writer {writer_id} at epoch {epoch} does not hold the grant of ledger "
            f"{ledger.ledger_id} (held by {ledger.writer_id or 'nobody'} at epoch {ledger.epoch})"
        )


def _describe(request: AppendRequest) -> str:
    expected = request.expected_version
    return str(expected) if isinstance(expected, int) else expected.value


def _limit(limit: int) -> int:
    if limit < 0:
        raise StorageError("2201W: LIMIT must not be negative")
    return limit


def _timestamptz(moment: datetime | None) -> datetime | None:
    """As asyncpg sends a timestamptz: a naive datetime is taken as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _storable(*texts: str | None) -> None:
    """Refuses text PostgreSQL cannot hold in a text column, as the server does."""
    for text in texts:
        if text is not None and not _is_pg_text(text):
            raise InvalidEvent(f"the database refused the input: {text!r} is not storable text")


def _is_pg_text(text: str) -> bool:
    """PostgreSQL text is UTF-8 without NUL: no U+0000 and no unpaired surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


# -- PostgreSQL's jsonb, as far as payload checks and system payloads need it --------


def parse_jsonb(raw: bytes | str, what: str) -> Any:
    """Parses JSON as a cast to jsonb does; raises InvalidEvent for what jsonb refuses.

    Differences from json.loads that matter: NaN and Infinity are not JSON, numbers
    are exact decimals of any length (Decimal, integers too), and U+0000 or unpaired
    surrogates in strings are refused.
    Duplicate keys are allowed; the last one wins, as in jsonb.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        value = json.loads(text, parse_float=Decimal, parse_int=Decimal,
                           parse_constant=_not_json)
        _check_strings(value)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidEvent(f"the database refused the input: {what} is not valid jsonb") from exc
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        if not _is_pg_text(value):
            raise ValueError("U+0000 or an unpaired surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(parse_jsonb(raw, "payload"), dict)
    except InvalidEvent:
        return False


def canonical_jsonb(value: Any) -> str:
    """Renders a value parse_jsonb returned as canonlog.canonical_json_v1 renders jsonb.

    That is canonical JSON v1 (canonlog.domain.canonical) for objects, arrays,
    strings, integers, booleans and null: keys in code point order, no whitespace,
    the escapes of to_json, which are json.dumps's with ensure_ascii off. Other
    numbers keep PostgreSQL numeric's rendering (no exponent, scale kept, no
    negative zero), not canonical JSON's float form. No system payload holds such a
    number; payload checks parse them (parse_jsonb), and the tests hold this rendering
    to the server's.
    """
    if isinstance(value, dict):
        members = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{canonical_jsonb(v)}"
                              for k, v in members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_jsonb(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(abs(value) if value.is_zero() else value, "f")
    return json.dumps(value, ensure_ascii=False)
