"""Sagas: the step contract, the saga's events, and its state as the fold of them.

A saga lives on a stream of its own (``saga-<uuid>``). Every decision and every
outcome is an event on that stream; ``fold`` turns the events into a SagaState
and ``next_action`` says what a driver does next. Nothing else is authoritative.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import InvalidEvent, InvalidSaga, SagaStateConflict
from canonlog.domain.events import RecordedEvent, check_name

SAGA_STREAM_PREFIX: Final = "saga-"
_STEP_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class SagaEvent(enum.StrEnum):
    """The event types of a saga's stream."""

    CREATED = "saga_created"
    STEP_PENDING = "step_pending"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_PENDING = "compensation_pending"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    ABORTED = "saga_aborted"
    COMPLETED = "saga_completed"
    SAGA_COMPENSATED = "saga_compensated"
    FAILED = "saga_failed"


SAGA_EVENT_TYPES: Final = frozenset(e.value for e in SagaEvent)


class SagaStatus(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


TERMINAL: Final = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED})


class StepStatus(enum.StrEnum):
    WAITING = "waiting"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATION_PENDING = "compensation_pending"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


def saga_stream(saga_id: str) -> str:
    return SAGA_STREAM_PREFIX + saga_id


@dataclass(frozen=True, slots=True)
class SagaStep:
    """One step: run `operation` with `payload` on `backend`, undone by `compensation`
    (a registered handler's name, or None when there is nothing to undo). The backend
    applies the operation at most once per `idempotency_key`."""

    step_id: str
    backend: str
    operation: str
    payload: bytes
    compensation: str | None
    idempotency_key: str

    def payload_object(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.payload)
        return value

    def as_json(self) -> dict[str, Any]:
        return {"step_id": self.step_id, "backend": self.backend, "operation": self.operation,
                "payload": self.payload_object(), "compensation": self.compensation,
                "idempotency_key": self.idempotency_key}


@dataclass(frozen=True, slots=True)
class SagaCatalogue:
    """What steps may name: each backend's kind and operations, and each compensation
    with the backend kind it undoes (None: any kind)."""

    operations: Mapping[str, frozenset[str]]
    kinds: Mapping[str, str]
    compensations: Mapping[str, str | None]


def define_steps(raw: Sequence[Mapping[str, Any]], catalogue: SagaCatalogue,
                 saga_id: str) -> tuple[SagaStep, ...]:
    """Validates step definitions; raises InvalidSaga naming the step and the problem.

    A step without an idempotency_key gets ``<saga_id>/<step_id>``.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise InvalidSaga("a saga needs a non-empty list of steps")
    steps: list[SagaStep] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise InvalidSaga(f"step {index} must be an object, got {type(item).__name__}")
        unknown = set(item) - {"step_id", "backend", "operation", "payload", "compensation",
                               "idempotency_key"}
        if unknown:
            raise InvalidSaga(f"step {index} has unknown fields {sorted(unknown)}")
        step_id = item.get("step_id")
        if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
            raise InvalidSaga(f"step {index}: step_id {step_id!r} must be 1-128 letters, digits "
                              "or _.:- starting with a letter or digit")
        if step_id in seen:
            raise InvalidSaga(f"step id {step_id!r} appears twice")
        seen.add(step_id)
        backend, operation = item.get("backend"), item.get("operation")
        if not isinstance(backend, str) or backend not in catalogue.operations:
            raise InvalidSaga(f"step {step_id!r}: unknown backend {backend!r}; known: "
                              f"{sorted(catalogue.operations)}")
        if not isinstance(operation, str) or operation not in catalogue.operations[backend]:
            raise InvalidSaga(f"step {step_id!r}: backend {backend!r} has no operation "
                              f"{operation!r}; it has {sorted(catalogue.operations[backend])}")
        compensation = item.get("compensation")
        if compensation is not None:
            if not isinstance(compensation, str) or compensation not in catalogue.compensations:
                raise InvalidSaga(f"step {step_id!r}: unknown compensation {compensation!r}; "
                                  f"registered: {sorted(catalogue.compensations)}")
            kind = catalogue.compensations[compensation]
            if kind is not None and kind != catalogue.kinds[backend]:
                raise InvalidSaga(f"step {step_id!r}: compensation {compensation!r} undoes "
                                  f"{kind} steps, not {catalogue.kinds[backend]} ones")
        try:
            payload = canonical_json(item.get("payload", {}), what=f"step {step_id!r} payload")
            key = item.get("idempotency_key") or f"{saga_id}/{step_id}"
            check_name(key, f"step {step_id!r} idempotency_key")
        except InvalidEvent as exc:
            raise InvalidSaga(str(exc)) from exc
        steps.append(SagaStep(step_id, backend, operation, payload, compensation, key))
    keys = [s.idempotency_key for s in steps]
    if len(set(keys)) != len(keys):
        raise InvalidSaga("two steps share an idempotency_key")
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class StepState:
    step: SagaStep
    status: StepStatus = StepStatus.WAITING
    attempts: int = 0
    compensation_attempts: int = 0
    retryable: bool = False
    error: str | None = None
    result: Mapping[str, Any] | None = None

    def may_have_applied(self) -> bool:
        """True when the step's effect may exist: it succeeded, its outcome is unknown
        (pending, or failed in a way that does not prove it did nothing), or its
        compensation has not finished."""
        return self.status in (StepStatus.SUCCEEDED, StepStatus.PENDING,
                               StepStatus.COMPENSATION_PENDING, StepStatus.COMPENSATION_FAILED) \
            or (self.status is StepStatus.FAILED and self.retryable)


@dataclass(frozen=True, slots=True)
class SagaState:
    """A saga as the fold of its events; `version` is its stream's version."""

    saga_id: str
    name: str
    trace_id: str | None
    status: SagaStatus
    steps: tuple[StepState, ...]
    version: int
    created_at: datetime
    updated_at: datetime
    aborted: bool = False
    cause: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def step(self, step_id: str) -> StepState:
        return next(s for s in self.steps if s.step.step_id == step_id)


def fold(events: Sequence[RecordedEvent]) -> SagaState:
    """Returns the state the events of one saga stream describe, oldest first.

    Raises SagaStateConflict when the stream does not start with saga_created or holds
    an event no saga writes.
    """
    if not events or events[0].event_type != SagaEvent.CREATED:
        raise SagaStateConflict("a saga stream starts with saga_created")
    first = json.loads(events[0].payload)
    steps = [StepState(_step_from_json(s)) for s in first["steps"]]
    index = {s.step.step_id: i for i, s in enumerate(steps)}
    state = SagaState(first["saga_id"], first["name"], first.get("trace_id"), SagaStatus.CREATED,
                      (), 1, events[0].recorded_at, events[0].recorded_at)
    for event in events[1:]:
        data = json.loads(event.payload)
        kind = event.event_type
        if kind not in SAGA_EVENT_TYPES:
            raise SagaStateConflict(f"a saga stream holds an unknown event {kind!r}")
        if "step_id" in data:
            i = index[data["step_id"]]
            steps[i] = _apply_step_event(steps[i], SagaEvent(kind), data)
            if kind == SagaEvent.STEP_PENDING and state.status is SagaStatus.CREATED:
                state = replace(state, status=SagaStatus.RUNNING)
        elif kind == SagaEvent.COMPENSATION_STARTED:
            state = replace(state, status=SagaStatus.COMPENSATING, cause=data["cause"],
                            reasons=state.reasons + tuple(data.get("reasons", ())))
        elif kind == SagaEvent.ABORTED:
            state = replace(state, aborted=True,
                            reasons=(*state.reasons, f"aborted: {data['reason']}"))
        elif kind == SagaEvent.COMPLETED:
            state = replace(state, status=SagaStatus.COMPLETED)
        elif kind == SagaEvent.SAGA_COMPENSATED:
            state = replace(state, status=SagaStatus.COMPENSATED)
        elif kind == SagaEvent.FAILED:
            state = replace(state, status=SagaStatus.FAILED,
                            reasons=state.reasons + tuple(data.get("reasons", ())))
        state = replace(state, version=event.stream_version, updated_at=event.recorded_at)
    return replace(state, steps=tuple(steps))


def _step_from_json(data: Mapping[str, Any]) -> SagaStep:
    return SagaStep(data["step_id"], data["backend"], data["operation"],
                    canonical_json(data["payload"]), data["compensation"], data["idempotency_key"])


def _apply_step_event(step: StepState, kind: SagaEvent, data: Mapping[str, Any]) -> StepState:
    if kind is SagaEvent.STEP_PENDING:
        return replace(step, status=StepStatus.PENDING, attempts=data["attempt"])
    if kind is SagaEvent.STEP_SUCCEEDED:
        return replace(step, status=StepStatus.SUCCEEDED, error=None, result=data.get("result"))
    if kind is SagaEvent.STEP_FAILED:
        return replace(step, status=StepStatus.FAILED, error=data["error"],
                       retryable=bool(data["retryable"]))
    if kind is SagaEvent.COMPENSATION_PENDING:
        return replace(step, status=StepStatus.COMPENSATION_PENDING,
                       compensation_attempts=data["attempt"])
    if kind is SagaEvent.COMPENSATED:
        return replace(step, status=StepStatus.COMPENSATED, error=None)
    if kind is SagaEvent.COMPENSATION_FAILED:
        return replace(step, status=StepStatus.COMPENSATION_FAILED, error=data["error"])
    raise SagaStateConflict(f"event {kind.value!r} does not name a step")


# -- what a driver does next ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunStep:
    step: StepState


@dataclass(frozen=True, slots=True)
class StartCompensation:
    cause: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Compensate:
    step: StepState


@dataclass(frozen=True, slots=True)
class Finish:
    status: SagaStatus
    reasons: tuple[str, ...] = ()


Action = RunStep | StartCompensation | Compensate | Finish | None


def next_action(state: SagaState, max_attempts: int) -> Action:
    """The one thing a driver does next with this saga, or None when it has ended.

    Forward, steps run in order; a step that failed retryably, or was left pending by a
    crash, runs again until it has had max_attempts attempts, then (or at once, for a
    refusal) compensation starts.
    Backward, every step whose effect may exist is compensated in reverse order, each
    up to max_attempts times; a compensation that keeps failing is left in place and
    the saga ends failed with the reason.
    """
    if state.status in TERMINAL:
        return None
    if state.status is not SagaStatus.COMPENSATING:
        if state.aborted:
            return StartCompensation("aborted", ())
        for step in state.steps:
            if step.status is StepStatus.SUCCEEDED:
                continue
            if step.status is StepStatus.WAITING:
                return RunStep(step)
            if step.status is StepStatus.PENDING:
                if step.attempts < max_attempts:
                    return RunStep(step)
                return StartCompensation("failed", (
                    f"step {step.step.step_id} was left pending after {step.attempts} attempts; "
                    "its outcome is unknown",))
            if step.status is StepStatus.FAILED and step.retryable \
                    and step.attempts < max_attempts:
                return RunStep(step)
            tries = f" after {step.attempts} attempts" if step.retryable else ""
            return StartCompensation("failed", (
                f"step {step.step.step_id} failed{tries}: {step.error}",))
        return Finish(SagaStatus.COMPLETED)
    given_up: list[str] = []
    for step in reversed(state.steps):
        if not step.may_have_applied() or step.step.compensation is None:
            continue
        if step.status in (StepStatus.COMPENSATION_FAILED, StepStatus.COMPENSATION_PENDING) \
                and step.compensation_attempts >= max_attempts:
            outcome = (f"failed after {step.compensation_attempts} attempts: {step.error}"
                       if step.status is StepStatus.COMPENSATION_FAILED else
                       f"was left pending after {step.compensation_attempts} attempts")
            given_up.append(f"compensation of step {step.step.step_id} {outcome}")
            continue
        return Compensate(step)
    if given_up or state.cause == "failed":
        return Finish(SagaStatus.FAILED, tuple(given_up))
    return Finish(SagaStatus.COMPENSATED)
