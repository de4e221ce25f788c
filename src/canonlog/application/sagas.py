"""The saga orchestrator: every step and compensation written ahead to the chain.

A driver holds the saga (SagaLocks) and appends each event under the version it
last saw, so two drivers cannot both advance one saga. Before a backend is
touched its pending event is in the chain; after, the outcome is. A crash in
between leaves the step pending; resuming runs it again, and the backend, keyed
by the step's idempotency key, does nothing the second time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog

from canonlog.application.ports import EventStore, SagaBackend, SagaLocks, SagaObserver
from canonlog.application.saga_registry import CompensationRegistry
from canonlog.domain.errors import (
    BackendRejected,
    BackendUnavailable,
    ConcurrencyConflict,
    InvalidEvent,
    InvalidSaga,
    SagaBusy,
    SagaNotFound,
    SagaStateConflict,
)
from canonlog.domain.events import NewEvent, RecordedEvent, StreamState, check_name
from canonlog.domain.saga import (
    TERMINAL,
    Compensate,
    Finish,
    RunStep,
    SagaCatalogue,
    SagaEvent,
    SagaState,
    SagaStatus,
    StartCompensation,
    StepStatus,
    define_steps,
    fold,
    next_action,
    saga_stream,
)

logger = structlog.get_logger("canonlog.sagas")

Sleep = Callable[[float], Awaitable[None]]


class SagaOrchestrator:
    """Creates, drives, aborts and compensates sagas on one ledger."""

    def __init__(
        self,
        store: EventStore,
        backends: Mapping[str, SagaBackend],
        compensations: CompensationRegistry,
        locks: SagaLocks,
        *,
        max_attempts: int = 3,
        retry_base_delay: float = 0.5,
        observer: SagaObserver | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._store = store
        self._backends = dict(backends)
        self._compensations = compensations
        self._locks = locks
        self._max_attempts = max_attempts
        self._retry_base_delay = retry_base_delay
        self._observer = observer
        self._sleep = sleep

    @property
    def max_attempts(self) -> int:
        return self._max_attempts

    def catalogue(self) -> SagaCatalogue:
        return SagaCatalogue(
            operations={name: b.operations for name, b in self._backends.items()},
            kinds={name: b.kind for name, b in self._backends.items()},
            compensations=self._compensations.kinds(),
        )

    # -- creating and reading ---------------------------------------------------------------

    async def create_saga(self, name: str, steps: Sequence[Mapping[str, Any]],
                          trace_id: str | None = None) -> str:
        """Validates the steps and records the saga; returns its id.

        Raises InvalidSaga, before anything is written, for a bad name or trace id, an
        unknown backend, operation or compensation, duplicate step ids or idempotency
        keys, or a payload canonical JSON refuses.
        """
        try:
            check_name(name, "saga name")
            if trace_id is not None:
                check_name(trace_id, "trace_id")
        except InvalidEvent as exc:
            raise InvalidSaga(str(exc)) from exc
        saga_id = str(uuid.uuid4())
        defined = define_steps(steps, self.catalogue(), saga_id)
        payload = {"saga_id": saga_id, "name": name, "trace_id": trace_id,
                   "steps": [s.as_json() for s in defined]}
        await self._store.append(saga_stream(saga_id), [NewEvent.create(SagaEvent.CREATED, payload)],
                                 expected_version=StreamState.NO_STREAM, correlation_id=trace_id)
        logger.info("saga created", saga_id=saga_id, trace_id=trace_id, saga=name,
                    steps=len(defined))
        return saga_id

    async def history(self, saga_id: str) -> list[RecordedEvent]:
        """The saga's events, oldest first; raises SagaNotFound when there are none."""
        try:
            events = await self._store.read_stream(saga_stream(saga_id))
        except InvalidEvent as exc:
            raise SagaNotFound(f"no saga {saga_id!r}: {exc}") from exc
        if not events:
            raise SagaNotFound(f"no saga {saga_id!r}")
        return events

    async def state(self, saga_id: str) -> SagaState:
        """The saga's state, folded from its events; raises SagaNotFound."""
        return fold(await self.history(saga_id))

    # -- driving ----------------------------------------------------------------------------

    async def execute_saga(self, saga_id: str) -> SagaState:
        """Runs a created saga to its end (completed, compensated or failed) and returns
        its state. Raises SagaStateConflict when it has started already (resume it),
        SagaBusy when another driver holds it."""
        async with self._held(saga_id):
            events = await self.history(saga_id)
            status = fold(events).status
            if status is not SagaStatus.CREATED:
                raise SagaStateConflict(f"saga {saga_id} is {status.value}; "
                                        "only a created saga is executed (resume it)")
            return await self._drive(saga_id, events)

    async def resume_saga(self, saga_id: str) -> SagaState:
        """Drives an unfinished saga on from where its events leave it; returns the state
        of a finished one unchanged. Raises SagaBusy when another driver holds it."""
        async with self._held(saga_id):
            return await self._drive(saga_id, await self.history(saga_id))

    async def abort_saga(self, saga_id: str, reason: str = "requested") -> SagaState:
        """Records the abort, which stops the saga before its next step and compensates
        what ran; a driver holding the saga compensates it, else this call does.
        Raises SagaStateConflict when the saga has ended or is compensating already."""
        while True:
            events = await self.history(saga_id)
            state = fold(events)
            if state.status in TERMINAL or state.status is SagaStatus.COMPENSATING \
                    or state.aborted:
                raise SagaStateConflict(f"saga {saga_id} is {state.status.value}"
                                        f"{' and aborted' if state.aborted else ''}; "
                                        "it cannot be aborted")
            try:
                await self._append(state, SagaEvent.ABORTED, {"reason": reason})
                break
            except ConcurrencyConflict:
                continue  # the driver moved on; look again
        async with self._locks.hold(saga_id) as held:
            if held:
                return await self._drive(saga_id, await self.history(saga_id))
        return await self.state(saga_id)

    async def compensate_saga(self, saga_id: str, reason: str = "requested") -> SagaState:
        """Undoes a saga, completed or not yet ended, in reverse step order; returns its
        state (compensated, or failed when a compensation kept failing). Raises
        SagaStateConflict for a saga already compensated or failed, SagaBusy when
        another driver holds it."""
        async with self._held(saga_id):
            events = await self.history(saga_id)
            state = fold(events)
            if state.status in (SagaStatus.COMPENSATED, SagaStatus.FAILED):
                raise SagaStateConflict(f"saga {saga_id} is {state.status.value} already")
            if state.status is not SagaStatus.COMPENSATING:
                events += await self._append(state, SagaEvent.COMPENSATION_STARTED,
                                             {"cause": "requested", "reasons": [reason]})
            return await self._drive(saga_id, events)

    def _held(self, saga_id: str) -> _Held:
        return _Held(self._locks, saga_id)

    async def _drive(self, saga_id: str, events: list[RecordedEvent]) -> SagaState:
        state = fold(events)
        with structlog.contextvars.bound_contextvars(saga_id=saga_id, trace_id=state.trace_id):
            while True:
                action = next_action(state, self._max_attempts)
                if action is None:
                    return state
                try:
                    if isinstance(action, RunStep):
                        events += await self._run_step(state, action)
                    elif isinstance(action, Compensate):
                        events += await self._compensate(state, action)
                    elif isinstance(action, StartCompensation):
                        logger.warning("saga compensating", cause=action.cause,
                                       reasons=list(action.reasons))
                        events += await self._append(
                            state, SagaEvent.COMPENSATION_STARTED,
                            {"cause": action.cause, "reasons": list(action.reasons)})
                    elif isinstance(action, Finish):
                        events += await self._finish(state, action)
                except ConcurrencyConflict as exc:
                    # Under the lock only an abort may move the saga: go on from it.
                    # Anything else means another driver advanced it; stop here.
                    events = await self.history(saga_id)
                    if fold(events).aborted == state.aborted:
                        raise SagaBusy(f"another driver advanced saga {saga_id}") from exc
                state = fold(events)

    async def _run_step(self, state: SagaState, action: RunStep) -> list[RecordedEvent]:
        step = action.step
        retry = step.status is not StepStatus.WAITING
        if step.status is StepStatus.FAILED:
            await self._sleep(self._retry_base_delay * 2 ** (step.attempts - 1))
        attempt = step.attempts + 1
        ids = {"step_id": step.step.step_id, "attempt": attempt}
        with structlog.contextvars.bound_contextvars(step_id=step.step.step_id):
            written = await self._append(state, SagaEvent.STEP_PENDING, ids)
            state = fold_on(state, written)
            backend = self._backends[step.step.backend]
            started = time.perf_counter()
            try:
                outcome = await backend.apply(step.step)
            except (BackendUnavailable, BackendRejected) as exc:
                retryable = isinstance(exc, BackendUnavailable)
                self._observe_step(step.step.backend, "failed", started, retry)
                logger.warning("saga step failed", attempt=attempt, retryable=retryable,
                               error=str(exc))
                return written + await self._append(state, SagaEvent.STEP_FAILED, {
                    **ids, "error": f"{type(exc).__name__}: {exc}", "retryable": retryable})
            self._observe_step(step.step.backend, "succeeded", started, retry)
            logger.info("saga step succeeded", attempt=attempt, applied=outcome.applied)
            return written + await self._append(state, SagaEvent.STEP_SUCCEEDED, {
                **ids, "applied": outcome.applied, "result": dict(outcome.result)})

    async def _compensate(self, state: SagaState, action: Compensate) -> list[RecordedEvent]:
        step = action.step
        if step.status is StepStatus.COMPENSATION_FAILED:
            await self._sleep(self._retry_base_delay * 2 ** (step.compensation_attempts - 1))
        attempt = step.compensation_attempts + 1
        ids = {"step_id": step.step.step_id, "attempt": attempt}
        assert step.step.compensation is not None
        with structlog.contextvars.bound_contextvars(step_id=step.step.step_id):
            written = await self._append(state, SagaEvent.COMPENSATION_PENDING, ids)
            state = fold_on(state, written)
            handler = self._compensations.get(step.step.compensation)
            try:
                await handler(self._backends[step.step.backend], step.step)
            except (BackendUnavailable, BackendRejected) as exc:
                self._observe_compensation(step.step.backend, "failed")
                logger.warning("saga compensation failed", attempt=attempt, error=str(exc))
                return written + await self._append(state, SagaEvent.COMPENSATION_FAILED, {
                    **ids, "error": f"{type(exc).__name__}: {exc}"})
            self._observe_compensation(step.step.backend, "compensated")
            logger.info("saga step compensated", attempt=attempt)
            return written + await self._append(state, SagaEvent.COMPENSATED, ids)

    async def _finish(self, state: SagaState, action: Finish) -> list[RecordedEvent]:
        kind = {SagaStatus.COMPLETED: SagaEvent.COMPLETED,
                SagaStatus.COMPENSATED: SagaEvent.SAGA_COMPENSATED}.get(action.status,
                                                                          SagaEvent.FAILED)
        payload: dict[str, Any] = {"reasons": list(action.reasons)} \
            if kind is SagaEvent.FAILED else {}
        logger.info("saga ended", status=action.status.value, reasons=list(action.reasons))
        return await self._append(state, kind, payload)

    async def _append(self, state: SagaState, kind: SagaEvent,
                      payload: Mapping[str, Any]) -> list[RecordedEvent]:
        result = await self._store.append(
            saga_stream(state.saga_id), [NewEvent.create(kind.value, payload)],
            expected_version=state.version, correlation_id=state.trace_id)
        return list(result.events)

    def _observe_step(self, backend: str, outcome: str, started: float, retry: bool) -> None:
        if self._observer is not None:
            self._observer.step_finished(backend, outcome, time.perf_counter() - started, retry)

    def _observe_compensation(self, backend: str, outcome: str) -> None:
        if self._observer is not None:
            self._observer.compensation_finished(backend, outcome)


def fold_on(state: SagaState, events: list[RecordedEvent]) -> SagaState:
    """The state after appending events the driver wrote itself: only the version moves
    that a next append needs (the full fold follows each action)."""
    return replace(state, version=events[-1].stream_version) if events else state


class _Held:
    """Holds a saga for the block; raises SagaBusy when another driver holds it."""

    def __init__(self, locks: SagaLocks, saga_id: str) -> None:
        self._cm = locks.hold(saga_id)
        self._saga_id = saga_id

    async def __aenter__(self) -> None:
        if not await self._cm.__aenter__():
            await self._cm.__aexit__(None, None, None)
            raise SagaBusy(f"another driver holds saga {self._saga_id}")

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)  # type: ignore[arg-type]
