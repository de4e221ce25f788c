"""Sagas end to end on real servers: both examples, refusals at creation, failure and
compensation in reverse order, and the chain verifying with saga events in it."""

from __future__ import annotations

import json

import pytest

from canonlog.application.verification import verify_ledger
from canonlog.domain.errors import ConcurrencyConflict, InvalidSaga, SagaStateConflict
from canonlog.domain.events import NewEvent
from canonlog.domain.saga import SagaEvent, SagaStatus, saga_stream
from tests.sagas.conftest import SagaWorld, order_steps, publish_steps


async def test_publishing_a_document_writes_every_store_and_records_every_step(world: SagaWorld):
    sagas = world.orchestrator()
    saga_id = await sagas.create_saga("publish", publish_steps(world), trace_id="trace-1")
    state = await sagas.execute_saga(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert (world.files / "docs/intro.md").read_text() == "# Intro\n"
    assert await world.user_pool.fetchval("SELECT title FROM documents WHERE slug='intro'") \
        == "Intro"
    assert await world.user_pool.fetchval(
        "SELECT count(*) FROM canonlog_graph_nodes WHERE node_id='doc:intro'") == 1
    if world.vector:
        assert await world.user_pool.fetchval(
            "SELECT count(*) FROM canonlog_vector_chunks WHERE document_id='intro'") == 1
    history = await sagas.history(saga_id)
    kinds = [e.event_type for e in history]
    steps = len(state.steps)
    assert kinds == ["saga_created"] + ["step_pending", "step_succeeded"] * steps \
        + ["saga_completed"]
    assert {e.correlation_id for e in history} == {"trace-1"}


async def test_an_order_completes_and_compensate_saga_undoes_it_in_reverse(world: SagaWorld):
    sagas = world.orchestrator()
    saga_id = await sagas.create_saga("order", order_steps(world))
    assert (await sagas.execute_saga(saga_id)).status is SagaStatus.COMPLETED
    key = f"{world.prefix}:order:o-1"
    assert json.loads(await world.redis.get(key)) == {"status": "placed"}
    state = await sagas.compensate_saga(saga_id)
    assert state.status is SagaStatus.COMPENSATED
    assert await world.redis.get(key) is None
    assert not (world.files / "receipts/o-1.txt").exists()
    assert await world.user_pool.fetchval("SELECT count(*) FROM stock_reservations") == 0
    compensated = [json.loads(e.payload)["step_id"] for e in await sagas.history(saga_id)
                   if e.event_type == "compensated"]
    assert compensated == ["receipt", "cache", "reserve"]
    with pytest.raises(SagaStateConflict):
        await sagas.compensate_saga(saga_id)


async def test_a_refused_step_compensates_the_steps_before_it_and_fails_with_the_reason(
        world: SagaWorld):
    sagas = world.orchestrator()
    steps = order_steps(world, quantity=2)
    steps.append({"step_id": "bad", "backend": "relational", "operation": "insert",
                  "payload": {"table": "stock_reservations",
                              "values": {"sku": "sku-1", "quantity": 0}},
                  "compensation": "relational_delete"})
    saga_id = await sagas.create_saga("order", steps)
    state = await sagas.execute_saga(saga_id)
    assert state.status is SagaStatus.FAILED
    assert any("step bad failed" in r and "check" in r for r in state.reasons)
    assert [s.status.value for s in state.steps] == ["compensated"] * 3 + ["failed"]
    assert await world.redis.get(f"{world.prefix}:order:o-1") is None
    assert await world.user_pool.fetchval("SELECT count(*) FROM stock_reservations") == 0
    kinds = [e.event_type for e in await sagas.history(saga_id)]
    # One attempt only: a refusal is not retried.
    assert kinds.count("step_pending") == 4
    assert kinds[-1] == "saga_failed"


@pytest.mark.parametrize(("change", "message"), [
    ({"backend": "nosql"}, "unknown backend"),
    ({"operation": "drop_table"}, "has no operation"),
    ({"compensation": "undo_everything"}, "unknown compensation"),
    ({"compensation": "kv_delete"}, "undoes kv steps"),
    ({"payload": '{"a": 1, "a": 2}'}, "twice"),
    ({"payload": {"n": float("nan")}}, "payload"),
    ({"step_id": "cache"}, "appears twice"),
])
async def test_bad_steps_are_refused_at_creation_and_nothing_is_written(
        world: SagaWorld, change, message):
    sagas = world.orchestrator()
    steps = order_steps(world)
    steps[0] = {**steps[0], **change}
    before = await world.ledger_events()
    with pytest.raises(InvalidSaga, match=message):
        await sagas.create_saga("order", steps)
    assert await world.ledger_events() == before
    assert await world.user_pool.fetchval("SELECT count(*) FROM stock_reservations") == 0


async def test_executing_twice_is_refused_and_resuming_an_ended_saga_changes_nothing(
        world: SagaWorld):
    sagas = world.orchestrator()
    saga_id = await sagas.create_saga("order", order_steps(world))
    await sagas.execute_saga(saga_id)
    with pytest.raises(SagaStateConflict):
        await sagas.execute_saga(saga_id)
    version = (await sagas.state(saga_id)).version
    assert (await sagas.resume_saga(saga_id)).version == version


async def test_the_saga_stream_refuses_an_append_at_a_version_it_has_moved_past(
        world: SagaWorld):
    sagas = world.orchestrator()
    saga_id = await sagas.create_saga("order", order_steps(world))
    with pytest.raises(ConcurrencyConflict):
        await world.client.append(saga_stream(saga_id), [NewEvent.create(
            SagaEvent.STEP_PENDING, {"step_id": "reserve", "attempt": 1})],
            expected_version=5)


async def test_verify_covers_saga_events_like_any_other(world: SagaWorld):
    sagas = world.orchestrator()
    saga_id = await sagas.create_saga("order", order_steps(world))
    await sagas.execute_saga(saga_id)
    report = await verify_ledger(world.event_log, "main")
    assert report.ok
    assert report.chain.events_checked >= len(await sagas.history(saga_id))
