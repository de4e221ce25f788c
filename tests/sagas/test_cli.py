"""`canonlog saga ...` as an operator runs it: create and execute from a steps file,
show the history from the chain, list by state, and the worker resuming a saga a
crashed driver left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sagas.conftest import order_steps, saga_world
from tests.sagas.faulty import Faults, FaultyBackend, SimulatedCrash
from tests.support.cli import Cli


@pytest.fixture
def cli(database, user_db, redis_url, tmp_path: Path) -> Cli:
    return Cli(database.app.uri(), database.admin.uri(), env={
        "CANONLOG_DATA_DIR": str(tmp_path / "data"),
        "CANONLOG_SAGA_BACKEND_DSN": user_db.uri(), "CANONLOG_SAGA_REDIS_URL": redis_url,
        "CANONLOG_SAGA_FILES_DIR": str(tmp_path / "files"),
        "CANONLOG_SAGA_STALE_AFTER": "0.001", "CANONLOG_SAGA_RETRY_BASE_DELAY": "0.01"})


async def test_a_saga_created_and_run_from_the_command_line_shows_its_history(
        cli: Cli, database, user_db, redis_url, tmp_path: Path):
    async with saga_world(database.app, user_db, redis_url, tmp_path / "files",
                          writer_id="writer-1") as world:
        steps = order_steps(world)
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    created = await cli.ok("saga", "create", "order", "--steps", str(tmp_path / "steps.json"),
                           "--trace-id", "t-42", "--execute", "--json")
    saga = created.json()
    assert saga["status"] == "completed" and saga["trace_id"] == "t-42"
    assert (tmp_path / "files/receipts/o-1.txt").exists()
    shown = await cli.ok("saga", "show", saga["saga_id"])
    assert shown.lines()[0].endswith("order completed")
    assert [line.split()[2] for line in shown.lines()[1:]] == (
        ["saga_created"] + ["step_pending", "step_succeeded"] * 3 + ["saga_completed"])
    listed = await cli.ok("saga", "list", "--state", "completed", "--json")
    assert [s["saga_id"] for s in listed.json()] == [saga["saga_id"]]
    assert (await cli.ok("saga", "list", "--state", "failed", "--json")).json() == []
    await cli.ok("verify")


async def test_bad_steps_exit_refused_and_an_unknown_saga_is_named(cli: Cli, tmp_path: Path):
    (tmp_path / "steps.json").write_text('[{"step_id": "a", "backend": "mainframe", '
                                         '"operation": "x"}]')
    refused = await cli("saga", "create", "x", "--steps", str(tmp_path / "steps.json"))
    assert refused.code == 3 and "unknown backend 'mainframe'" in refused.stderr
    missing = await cli("saga", "show", "3f1c1b1e-0000-4000-8000-000000000000")
    assert missing.code == 3 and "SagaNotFound" in missing.stderr


async def test_the_worker_resumes_a_saga_left_pending_by_a_crash(
        cli: Cli, database, user_db, redis_url, tmp_path: Path):
    async with saga_world(database.app, user_db, redis_url, tmp_path / "files",
                          writer_id="writer-1") as world:
        faults = Faults()
        backends = {n: FaultyBackend(b, world.client, faults) for n, b in world.backends.items()}
        sagas = world.orchestrator(backends=backends)
        saga_id = await sagas.create_saga("order", order_steps(world))
        faults.crash_after.add(f"{saga_id}/cache")
        with pytest.raises(SimulatedCrash):
            await sagas.execute_saga(saga_id)
    report = await cli.ok("saga", "worker", "--once", "--json")
    assert report.json() == {"resumed": 1, "busy": 0, "failed": 0}
    shown = (await cli.ok("saga", "show", saga_id, "--json")).json()
    assert shown["saga"]["status"] == "completed"
    cache = [e["payload"] for e in shown["history"] if e["type"] == "step_succeeded"
             and e["payload"]["step_id"] == "cache"]
    assert cache[0]["applied"] is False
