"""The saga's pure rules: the step contract, the fold, and what a driver does next."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import InvalidSaga, SagaStateConflict
from canonlog.domain.events import RecordedEvent
from canonlog.domain.saga import (
    Compensate,
    Finish,
    RunStep,
    SagaCatalogue,
    SagaStatus,
    StartCompensation,
    StepStatus,
    define_steps,
    fold,
    next_action,
)

CATALOGUE = SagaCatalogue(operations={"db": frozenset({"insert"}), "kv": frozenset({"set"})},
                          kinds={"db": "relational", "kv": "kv"},
                          compensations={"relational_delete": "relational", "kv_delete": "kv",
                                         "any": None})
STEPS = [{"step_id": "a", "backend": "db", "operation": "insert", "payload": {"x": 1},
          "compensation": "relational_delete"},
         {"step_id": "b", "backend": "kv", "operation": "set", "payload": {"k": "v"},
          "compensation": "kv_delete", "idempotency_key": "order-1/cache"},
         {"step_id": "c", "backend": "kv", "operation": "set", "compensation": None}]


def _events(*later: tuple[str, dict[str, Any]]) -> list[RecordedEvent]:
    steps = define_steps(STEPS, CATALOGUE, "s1")
    created = ("saga_created", {"saga_id": "s1", "name": "n", "trace_id": None,
                                "steps": [s.as_json() for s in steps]})
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return [RecordedEvent("main", n, uuid.uuid4(), "saga-s1", n, kind, canonical_json(data),
                          b"{}", None, None, None, None, None, "w", 1, None, moment, 1,
                          bytes(32), bytes(32))
            for n, (kind, data) in enumerate((created, *later), start=1)]


def test_steps_are_canonicalised_and_get_a_default_idempotency_key():
    steps = define_steps(STEPS, CATALOGUE, "s1")
    assert [s.idempotency_key for s in steps] == ["s1/a", "order-1/cache", "s1/c"]
    assert steps[2].payload == b"{}"


@pytest.mark.parametrize(("steps", "message"), [
    ([], "non-empty"),
    ([{**STEPS[0], "extra": 1}], "unknown fields"),
    ([{**STEPS[0], "step_id": "../x"}], "step_id"),
    ([STEPS[0], {**STEPS[1], "idempotency_key": "s1/a"}], "share an idempotency_key"),
    ([{**STEPS[0], "payload": [1]}], "JSON object"),
    ([{**STEPS[0], "idempotency_key": "bad\nkey"}], "control"),
])
def test_malformed_steps_are_refused_naming_the_problem(steps, message):
    with pytest.raises(InvalidSaga, match=message):
        define_steps(steps, CATALOGUE, "s1")


def test_a_compensation_bound_to_no_kind_fits_any_backend():
    define_steps([{**STEPS[0], "compensation": "any"}], CATALOGUE, "s1")


def test_the_fold_follows_steps_and_the_driver_runs_them_in_order():
    events = _events(("step_pending", {"step_id": "a", "attempt": 1}))
    state = fold(events)
    assert state.status is SagaStatus.RUNNING and state.version == 2
    action = next_action(state, 3)
    assert isinstance(action, RunStep) and action.step.step.step_id == "a"
    done = fold(_events(*[e for s in "abc" for e in (
        ("step_pending", {"step_id": s, "attempt": 1}),
        ("step_succeeded", {"step_id": s, "attempt": 1, "applied": True, "result": {}}))]))
    assert next_action(done, 3) == Finish(SagaStatus.COMPLETED)


def test_a_retryable_failure_runs_again_until_the_attempts_are_spent():
    failed = [("step_pending", {"step_id": "a", "attempt": 1}),
              ("step_failed", {"step_id": "a", "attempt": 1, "error": "down", "retryable": True})]
    assert isinstance(next_action(fold(_events(*failed)), 3), RunStep)
    action = next_action(fold(_events(*failed)), 1)
    assert isinstance(action, StartCompensation) and "after 1 attempts: down" in action.reasons[0]


def test_compensation_undoes_what_may_have_applied_in_reverse_and_gives_up_after_attempts():
    events = [("step_pending", {"step_id": "a", "attempt": 1}),
              ("step_succeeded", {"step_id": "a", "attempt": 1, "applied": True}),
              ("step_pending", {"step_id": "b", "attempt": 1}),
              ("compensation_started", {"cause": "aborted", "reasons": []})]
    state = fold(_events(*events))
    action = next_action(state, 2)
    assert isinstance(action, Compensate) and action.step.step.step_id == "b"
    events += [("compensation_pending", {"step_id": "b", "attempt": 1}),
               ("compensation_failed", {"step_id": "b", "attempt": 1, "error": "gone"}),
               ("compensation_pending", {"step_id": "b", "attempt": 2}),
               ("compensation_failed", {"step_id": "b", "attempt": 2, "error": "gone"})]
    action = next_action(fold(_events(*events)), 2)
    assert isinstance(action, Compensate) and action.step.step.step_id == "a"
    events += [("compensation_pending", {"step_id": "a", "attempt": 1}),
               ("compensated", {"step_id": "a", "attempt": 1})]
    final = next_action(fold(_events(*events)), 2)
    assert isinstance(final, Finish) and final.status is SagaStatus.FAILED
    assert "compensation of step b failed after 2 attempts: gone" in final.reasons[0]


def test_an_abort_stops_the_saga_and_ends_it_compensated():
    state = fold(_events(("saga_aborted", {"reason": "user"})))
    assert state.aborted and next_action(state, 3) == StartCompensation("aborted", ())
    started = fold(_events(("saga_aborted", {"reason": "user"}),
                           ("compensation_started", {"cause": "aborted", "reasons": []})))
    assert next_action(started, 3) == Finish(SagaStatus.COMPENSATED)
    assert started.step("a").status is StepStatus.WAITING


def test_a_stream_that_is_not_a_saga_does_not_fold():
    with pytest.raises(SagaStateConflict):
        fold(_events()[1:])
    with pytest.raises(SagaStateConflict, match="unknown event"):
        fold(_events(("thing_happened", {})))


def test_a_step_or_compensation_a_crash_keeps_leaving_pending_is_given_up():
    crashed = [("step_pending", {"step_id": "a", "attempt": n}) for n in (1, 2)]
    action = next_action(fold(_events(*crashed)), 2)
    assert isinstance(action, StartCompensation)
    assert "left pending after 2 attempts" in action.reasons[0]
    backward = [*crashed, ("compensation_started", {"cause": "failed", "reasons": []}),
                ("compensation_pending", {"step_id": "a", "attempt": 1}),
                ("compensation_pending", {"step_id": "a", "attempt": 2})]
    final = next_action(fold(_events(*backward)), 2)
    assert final == Finish(SagaStatus.FAILED,
                           ("compensation of step a was left pending after 2 attempts",))
