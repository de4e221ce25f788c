"""The EventLog in memory, held to the same rules as the PostgreSQL functions.

Each method mirrors one function of sql/0001_core.sql, sql/0002_append_path.sql or
sql/0003_ceremonies.sql, step for step and in the same order, so a refusal here is
the refusal PostgreSQL would give, with the same error and message. Nothing is
persisted. This module holds the reads and the write path; governance.py the
governance steps, store.py the state they share.

What the runtime roles may not call has no public method either: as the database
lets no role but its owner execute canonlog.resume_v1, a halted ledger resumes here
only through its ceremony (propose_resume, approve, resume_ceremony).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from canonlog.application.ports import AppendOutcome, AppendResult
from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import (
    ConcurrencyConflict,
    GrantUnavailable,
    IdempotencyConflict,
    InvalidEvent,
    StorageError,
)
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
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
from canonlog.domain.governance import PolicyInForce
from canonlog.domain.hashing import request_digest_v1
from canonlog.infrastructure.memory.governance import MemoryGovernance
from canonlog.infrastructure.memory.jsontext import NOT_AN_OBJECT, json_problem
from canonlog.infrastructure.memory.pgtext import storable
from canonlog.infrastructure.memory.store import (
    MAX_NAME,
    MemoryLedger,
    RecordedExecution,
    check_grant,
    halted_error,
    ledger_state_of,
    sealed,
)


class MemoryEventLog(MemoryGovernance):
    """EventLog in process memory; see the EventLog port for the contract."""

    # -- the write path ----------------------------------------------------------

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        storable(ledger_id, writer_id)
        if not 1 <= len(writer_id) <= MAX_NAME:
            raise InvalidEvent("writer_id must be 1 to 256 characters")
        async with self._lock(ledger_id):
            ledger = self._ledgers.get(ledger_id)
            if ledger is None:
                if not 1 <= len(ledger_id) <= MAX_NAME:
                    raise InvalidEvent("ledger_id must be 1 to 256 characters")
                ledger = MemoryLedger(ledger_id)
                kind = "genesis"
            elif ledger.halted:
                raise halted_error(ledger)
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
        storable(grant.ledger_id, grant.writer_id)
        async with self._lock(grant.ledger_id):
            ledger = self._existing(grant.ledger_id)
            check_grant(ledger, grant.writer_id, grant.epoch)
            if ledger.halted:
                raise halted_error(ledger)
            event = self._system_event(ledger, "canonlog.writer_released", {
                "writer_id": grant.writer_id, "epoch": grant.epoch,
            }, grant.writer_id, grant.epoch)
            ledger.writer_id = None
            self._store(ledger, [event])

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        if not requests:
            return []
        codes = [expected_version_code(r.expected_version) for r in requests]
        for r in requests:
            c = r.context
            storable(grant.ledger_id, grant.writer_id, r.stream_id, c.task_id, c.execution_id,
                      c.correlation_id, c.causation_id, c.agent_id,
                      *(e.event_type for e in r.events))
        if any(not r.events for r in requests):
            raise InvalidEvent("append_v2 arrays disagree in length, or a request has no events")
        async with self._lock(grant.ledger_id):
            ledger = self._existing(grant.ledger_id)
            if ledger.halted:
                raise halted_error(ledger)
            check_grant(ledger, grant.writer_id, grant.epoch)
            events = [e for r in requests for e in r.events]
            not_an_object = None
            for number, event in enumerate(events, 1):
                if not _json_objects(event.payload, event.metadata, number) and not_an_object is None:
                    not_an_object = number
            if not_an_object is not None:
                raise InvalidEvent(f"event {not_an_object} of the batch: payload and metadata "
                                   "must be JSON objects")
            return self._append_checked(ledger, grant, requests, codes)

    def _append_checked(
        self, ledger: MemoryLedger, grant: WriterGrant, requests: Sequence[AppendRequest],
        codes: list[int | None],
    ) -> list[AppendOutcome]:
        """The per-request loop of append_v2, run once the whole batch is allowed."""
        last = ledger.events[-1] if ledger.events else None
        now = self._now(last.recorded_at if last else None)
        sequence = len(ledger.events)
        prev_hash = last.hash if last else GENESIS_HASH
        versions: dict[str, int] = {}
        executions: dict[str, RecordedExecution] = {}
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
                recorded.append(sealed(RecordedEvent(
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
                executions[execution_id] = RecordedExecution(digest, result.events)
            outcomes.append(result)
        # Only now, with every outcome decided, does anything reach the ledger.
        self._store(ledger, staged)
        ledger.executions.update(executions)
        return outcomes

    def _problem(
        self, ledger: MemoryLedger, request: AppendRequest, staged_ids: set[uuid.UUID]
    ) -> str | None:
        """The reason append_v2 gives for an 'invalid' request, or None."""
        stream, context = request.stream_id, request.context
        if not 1 <= len(stream) <= MAX_NAME:
            return "stream_id must be 1 to 256 characters"
        if stream.startswith(SYSTEM_STREAM_PREFIX):
            return f"stream_id {stream} is reserved for the ledger's own events"
        ids = (context.task_id, context.execution_id, context.correlation_id,
               context.causation_id, context.agent_id)
        if any(x is not None and not 1 <= len(x) <= MAX_NAME for x in ids):
            return ("task, execution, correlation, causation and agent ids "
                    "must be 1 to 256 characters")
        in_request: set[uuid.UUID] = set()
        for event in request.events:
            if not 1 <= len(event.event_type) <= MAX_NAME:
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
        storable(ledger_id, stream_id)
        ledger = self._ledgers.get(ledger_id)
        events = ledger.streams.get(stream_id, []) if ledger else []
        start = max(from_version, 1) - 1
        return events[start:] if limit is None else events[start:start + _limit(limit)]

    async def read_execution(self, ledger_id: str, execution_id: str) -> list[RecordedEvent]:
        self._check_open()
        storable(ledger_id, execution_id)
        ledger = self._ledgers.get(ledger_id)
        recorded = ledger.executions.get(execution_id) if ledger else None
        return list(recorded.events) if recorded else []

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        self._check_open()
        storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        start = max(after, 0)
        return ledger.events[start:start + _limit(limit)] if ledger else []

    async def head(self, ledger_id: str) -> Head:
        self._check_open()
        storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        if ledger is None or not ledger.events:
            return Head(ledger_id, 0, GENESIS_HASH)
        return Head(ledger_id, ledger.events[-1].sequence, ledger.events[-1].hash)

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        self._check_open()
        storable(ledger_id)
        ledger = self._existing(ledger_id)
        return ledger_state_of(ledger)

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        self._check_open()
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            return []
        return sorted(ledger.keys.values(), key=lambda k: k.added_seq)

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        self._check_open()
        storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            return []
        return [c for number, c in sorted(ledger.ceremonies.items())
                if proposal_id is None or number == proposal_id]

    async def policies(self, ledger_id: str) -> list[PolicyInForce]:
        self._check_open()
        storable(ledger_id)
        ledger = self._ledgers.get(ledger_id)
        return list(ledger.policies) if ledger is not None else []


def _signature_problem(ledger: MemoryLedger, event: NewEvent, agent_id: str | None) -> str | None:
    """The signature checks of append_v2: shape, and the key registered to the agent."""
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


def _json_objects(payload: bytes, metadata: bytes, number: int) -> bool:
    """canonlog.json_objects_v2: whether both are JSON objects; raises InvalidEvent
    naming the event and the problem when one is an object but not canonical JSON v1."""
    payload_problem = json_problem(payload)
    if payload_problem == NOT_AN_OBJECT:
        return False
    metadata_problem = None if metadata == b"{}" else json_problem(metadata)
    if metadata_problem == NOT_AN_OBJECT:
        return False
    if payload_problem is not None:
        raise InvalidEvent(f"event {number} of the batch: payload {payload_problem}")
    if metadata_problem is not None:
        raise InvalidEvent(f"event {number} of the batch: metadata {metadata_problem}")
    return True
