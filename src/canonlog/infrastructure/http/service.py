"""What the routes call: one ledger's client, its store, checkpoints and verification runs.

The routes stay thin: they parse, call one method here (which calls the
application's use cases), and render. Everything here is built once per process
by the application's lifespan, from the composition root's ledger.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog

from canonlog.application.client import LedgerClient
from canonlog.application.ports import AppendResult, CheckpointStore, TrustedCheckpoints
from canonlog.application.verification import UNPROTECTED, VerificationReport, verify_ledger
from canonlog.application.writer import WriterState
from canonlog.domain.checkpoint import (
    TrustedKey,
    cosigned_note,
    parse_checkpoint,
    verify_checkpoint,
)
from canonlog.domain.errors import CanonlogError, CheckpointFormatError
from canonlog.domain.events import DEFAULT_LIMITS, LedgerState, Limits, NewEvent, StreamState
from canonlog.infrastructure.http.errors import ApiError, error_code
from canonlog.infrastructure.http.metrics import ServiceMetrics
from canonlog.infrastructure.http.models import (
    AppendIn,
    ChainBreakOut,
    CheckpointOut,
    VerificationOut,
)

log = structlog.get_logger("canonlog.http")

#: Finished verification runs kept for reading back; older ones are forgotten.
_KEPT_RUNS: Final = 32
#: Seconds a readiness probe waits for the database before calling it unreachable.
_PROBE_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class CheckpointLagBound:
    """How far the ledger may run ahead of its newest published checkpoint and stay ready."""

    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class CheckpointLag:
    """Events after the newest published checkpoint, and how long the oldest of them has
    waited for one (0 when every event is covered)."""

    checkpoint_sequence: int
    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class CheckpointSource:
    """Where the service reads published checkpoints, and whose signatures it trusts."""

    store: CheckpointStore
    signers: tuple[TrustedKey, ...]
    witnesses: tuple[TrustedKey, ...] = ()
    trusted: TrustedCheckpoints | None = None
    #: Set where this process publishes checkpoints: readiness then holds it to the bound.
    lag_bound: CheckpointLagBound | None = None


@dataclass(slots=True)
class _Run:
    view: VerificationOut
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class LedgerService:
    """One ledger as the HTTP API serves it."""

    def __init__(self, client: LedgerClient, metrics: ServiceMetrics, *, writer_id: str,
                 checkpoints: CheckpointSource | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.client = client
        self.limits = limits
        self.writer_id = writer_id
        self.ledger_id = client.ledger_id
        self.metrics = metrics
        self.checkpoints = checkpoints
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        client.writer.observe_batches(metrics.observe_batch)

    # -- writing --------------------------------------------------------------------------

    async def append(self, stream_id: str, body: AppendIn, execution_id: str | None,
                     agent_id: str | None) -> AppendResult:
        """Appends through the ledger's writer, counting the outcome and its latency."""
        started = time.perf_counter()
        self.metrics.append_queue_depth.inc()
        try:
            events = [NewEvent.create(e.type, e.payload, e.metadata, event_id=e.id,
                                      limits=self.limits) for e in body.events]
            expected = (StreamState(body.expected_version) if isinstance(body.expected_version, str)
                        else body.expected_version)
            result = await self.client.append(
                stream_id, events, expected_version=expected, execution_id=execution_id,
                task_id=body.task_id, correlation_id=body.correlation_id,
                causation_id=body.causation_id, agent_id=agent_id)
        except CanonlogError as exc:
            self.metrics.appends.labels(error_code(exc)).inc()
            raise
        finally:
            self.metrics.append_queue_depth.dec()
        self.metrics.appends.labels("replayed" if result.replayed else "ok").inc()
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.metrics.append_events.observe(len(result.events))
        return result

    async def halt(self, reason: str, actor: str) -> tuple[bool, LedgerState]:
        """Halts the ledger through its writer (the chained event, then every halt channel);
        returns whether this call recorded the halt, and the state after it."""
        outcome = await self.client.writer.halt(f"{reason} (by {actor})")
        log.critical("ledger halted over HTTP", actor=actor, reason=reason,
                     recorded=outcome.recorded, unannounced=len(outcome.unannounced))
        return outcome.recorded, await self.client.event_log.ledger_state(self.ledger_id)

    # -- health ---------------------------------------------------------------------------

    async def readiness(self) -> tuple[list[str], dict[str, str]]:
        """Returns the reasons the service is not ready (none when ready) and each check's result."""
        checks: dict[str, str] = {}
        reasons: list[str] = []
        writer = self.client.writer
        try:
            state = await asyncio.wait_for(self.client.event_log.ledger_state(self.ledger_id),
                                           _PROBE_TIMEOUT)
        except (CanonlogError, TimeoutError) as exc:
            checks["database"] = "unreachable"
            reasons.append(f"database: {exc or 'no answer within the probe timeout'}")
            state = None
        else:
            checks["database"] = "ok"
        if writer.state is WriterState.ACCEPTING:
            checks["writer"] = "accepting"
        else:
            checks["writer"] = writer.state.value
            reasons.append(f"writer: {writer.state.value}, not accepting writes")
        if writer.state is WriterState.LEASE_LOST:
            checks["lease"] = "lost"
            reasons.append("lease: the writer does not hold its lease")
        elif writer.state is WriterState.ACCEPTING:
            checks["lease"] = "held"
        else:
            checks["lease"] = "not held"
        if state is not None:
            if state.halted:
                checks["halt"] = "halted"
                reasons.append(f"halt: the ledger is halted ({state.halt_reason or 'no reason'})")
            else:
                checks["halt"] = "not halted"
        self._observe(state, writer.state)
        bound = self.checkpoints.lag_bound if self.checkpoints else None
        if bound is not None:
            try:
                lag = await asyncio.wait_for(self.checkpoint_lag(), _PROBE_TIMEOUT)
            except (CanonlogError, TimeoutError) as exc:
                checks["checkpoint_lag"] = "unknown"
                reasons.append(f"checkpoint lag: cannot be measured ({exc or 'no answer'})")
            else:
                checks["checkpoint_lag"] = f"{lag.events} events, {lag.seconds:.0f} s"
                if lag.events > bound.events or lag.seconds > bound.seconds:
                    reasons.append(
                        f"checkpoint lag: {lag.events} events and {lag.seconds:.0f} s after the "
                        f"checkpoint at {lag.checkpoint_sequence}, beyond the bound of "
                        f"{bound.events} events or {bound.seconds:g} s")
        return reasons, checks

    def _observe(self, state: LedgerState | None, writer_state: WriterState) -> None:
        self.metrics.halted.set(-1 if state is None else int(state.halted))
        self.metrics.writer_accepting.set(int(writer_state is WriterState.ACCEPTING))
        self.metrics.lease_held.set(int(writer_state is WriterState.ACCEPTING))

    async def refresh_gauges(self) -> None:
        """Updates the state gauges before a scrape; a failing database shows as unknown."""
        try:
            state: LedgerState | None = await self.client.event_log.ledger_state(self.ledger_id)
            head = await self.client.head()
            self.metrics.head_sequence.set(head.sequence)
        except CanonlogError:
            state = None
        self._observe(state, self.client.writer.state)
        if self.checkpoints is not None:
            try:
                lag = await self.checkpoint_lag()
                events, seconds = float(lag.events), lag.seconds
            except CanonlogError:
                events = seconds = -1.0
            self.metrics.checkpoint_lag_events.set(events)
            self.metrics.checkpoint_lag_seconds.set(seconds)

    async def checkpoint_lag(self) -> CheckpointLag:
        """How far the ledger's head is past its newest published checkpoint."""
        stored = await self._source().store.list_checkpoints(self.ledger_id)
        covered = next((s.sequence for s in stored if s.sequence is not None), 0)
        head = await self.client.head()
        if head.sequence <= covered:
            return CheckpointLag(covered, 0, 0.0)
        oldest = await self.client.read_all(after=covered, limit=1)
        waited = (datetime.now(UTC) - oldest[0].recorded_at).total_seconds() if oldest else 0.0
        return CheckpointLag(covered, head.sequence - covered, max(waited, 0.0))

    # -- checkpoints ----------------------------------------------------------------------

    def _source(self) -> CheckpointSource:
        if self.checkpoints is None:
            raise ApiError(404, "checkpoints_not_configured",
                           "this service has no checkpoint directory configured")
        return self.checkpoints

    async def checkpoint_sequences(self) -> list[int]:
        stored = await self._source().store.list_checkpoints(self.ledger_id)
        return [s.sequence for s in stored if s.sequence is not None]

    async def checkpoint_note(self, sequence: int | None) -> bytes:
        """The raw signed note at sequence (the newest when None); ApiError 404 when absent."""
        source = self._source()
        if sequence is None:
            listed = await source.store.list_checkpoints(self.ledger_id)
            found = listed[0] if listed else None
        else:
            found = await source.store.load(self.ledger_id, sequence)
        if found is None:
            where = "" if sequence is None else f" at sequence {sequence}"
            raise ApiError(404, "checkpoint_not_found",
                           f"ledger {self.ledger_id} has no published checkpoint{where}")
        if found.unreadable is not None:
            raise ApiError(502, "checkpoint_unreadable",
                           f"the stored checkpoint cannot be read: {found.unreadable}",
                           details={"sequence": sequence})
        return cosigned_note(found.note, (c.content for c in found.cosignatures),
                             source.witnesses)

    async def checkpoint(self, sequence: int | None) -> CheckpointOut:
        source = self._source()
        note = await self.checkpoint_note(sequence)
        try:
            signed = parse_checkpoint(note)
        except CheckpointFormatError as exc:
            raise ApiError(502, "checkpoint_unreadable", f"the stored checkpoint is not a note: {exc}",
                           details={"sequence": sequence}) from exc
        verification = verify_checkpoint(signed, source.signers, source.witnesses)
        body = signed.checkpoint
        return CheckpointOut(
            ledger_id=body.ledger_id, origin=body.origin, sequence=body.sequence,
            head_hash=body.head_hash.hex(), time=body.time, signed_by=list(verification.signed_by),
            cosigned_by=[name for name, _ in verification.cosigned_by],
            trusted=verification.trusted, problem=verification.problem(),
        )

    # -- verification ---------------------------------------------------------------------

    def start_verification(self) -> VerificationOut:
        """Starts a full verification in the background and returns its running view."""
        run_id = uuid.uuid4().hex
        view = VerificationOut(id=run_id, ledger_id=self.ledger_id, status="running",
                               started_at=datetime.now(UTC))
        run = _Run(view)
        self._runs[run_id] = run
        while len(self._runs) > _KEPT_RUNS:
            oldest_id, oldest = next(iter(self._runs.items()))
            if oldest.task is not None and not oldest.task.done():
                break
            del self._runs[oldest_id]
        run.task = asyncio.create_task(self._verify(run), name=f"canonlog-verify-{run_id}")
        return view

    def verifications(self) -> list[VerificationOut]:
        """The runs kept, newest first."""
        return [run.view for run in reversed(self._runs.values())]

    def verification(self, run_id: str) -> VerificationOut:
        run = self._runs.get(run_id)
        if run is None:
            raise ApiError(404, "verification_not_found", f"no verification run {run_id!r} is known")
        return run.view

    async def _verify(self, run: _Run) -> None:
        view = run.view
        try:
            trusted = self.checkpoints.trusted if self.checkpoints else None
            heads = await trusted.heads(self.ledger_id) if trusted is not None else []
            evidence = await trusted.tamper_evidence(self.ledger_id) if trusted is not None else []
            report = await verify_ledger(self.client.event_log, self.ledger_id, trusted=heads,
                                         tamper_evidence=evidence, from_genesis=True)
            run.view = _finished(view, report)
        except CanonlogError as exc:
            run.view = view.model_copy(update={
                "status": "error", "finished_at": datetime.now(UTC),
                "summary": f"verification could not run: {exc}"})
        self.metrics.verification_ok.set(int(run.view.status == "passed"))
        self.metrics.verification_time.set(time.time())
        log.info("verification finished", run=view.id, status=run.view.status)

    async def close(self) -> None:
        """Cancels verification runs still going."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _finished(view: VerificationOut, report: VerificationReport) -> VerificationOut:
    chain = report.chain
    breaks = [ChainBreakOut(sequence=b.sequence, kind=b.kind, message=b.message,
                            expected=b.expected, found=b.found) for b in chain.breaks]
    mismatches = report.checkpoints.mismatches
    breaks += [ChainBreakOut(sequence=m.checkpoint.sequence, kind=f"checkpoint_{m.kind}",
                             message=m.message, expected=m.checkpoint.hash.hex(),
                             found=m.database.hash.hex()) for m in mismatches]
    summary = chain.summary()
    if mismatches:
        summary += f"; {len(mismatches)} trusted checkpoint(s) contradicted"
    summary += "".join(f"; {reason}" for reason in report.problems()
                       if reason.startswith("tamper evidence"))
    if report.unprotected:
        summary += f"; {UNPROTECTED}"
    return view.model_copy(update={
        "status": "passed" if report.ok else "failed", "finished_at": datetime.now(UTC),
        "events_checked": chain.events_checked, "last_sequence": chain.last_sequence,
        "head_hash": chain.head_hash.hex(), "breaks_total": chain.breaks_total + len(mismatches),
        "checkpoints_checked": report.checkpoints.checked,
        "uncovered_events": report.coverage.uncovered,
        "breaks": breaks, "summary": summary})
