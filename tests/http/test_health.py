"""Health and readiness that mean something, halting over HTTP, and the metrics that show it."""

from __future__ import annotations

import asyncio
import re

import asyncpg
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from canonlog.infrastructure.bootstrap import service_config
from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.http.auth import AuthConfig
from canonlog.infrastructure.keyfiles import generate_key_file
from canonlog.infrastructure.postgres.lease import LEASE_LOCK_CLASS
from tests.http.conftest import running_service, service_settings
from tests.http.test_api import stored_count
from tests.http.test_errors import assert_standard_error


def metric(text: str, name: str) -> float:
    """The value of one sample line of the exposition format, labels included in name."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in the metrics")


async def test_readiness_flips_to_503_naming_the_halt_once_the_ledger_is_halted(
        database, tmp_path, auth_config, tokens):
    config = ServiceConfig(auth=auth_config)
    async with running_service(database, tmp_path, config) as service, \
            service.client(headers=tokens.bearer()) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "writer": "accepting", "lease": "held",
                                          "halt": "not halted"}
        await client.post("/v1/streams/s/events", json={"events": [{"type": "x", "payload": {}}]})

        with capture_logs(processors=[merge_contextvars]) as logs:
            halted = await client.post("/v1/halt", json={"reason": "suspicious export"},
                                       headers={"X-Request-ID": "halt-1"})
        assert halted.status_code == 200, halted.text
        assert halted.json()["halted"] is True
        assert halted.json()["recorded"] is True
        # Everything the request logged, in the writer too, carries its request id.
        assert {"ledger halted", "ledger halted over HTTP"} <= {e["event"] for e in logs}
        assert all(e["request_id"] == "halt-1" for e in logs), logs
        again = await client.post("/v1/halt", json={"reason": "twice"})
        assert again.json()["recorded"] is False

        not_ready = await client.get("/readyz")
        error = assert_standard_error(not_ready, 503, "not_ready")
        assert error["details"]["checks"]["halt"] == "halted"
        assert any("suspicious export" in r for r in error["details"]["reasons"])
        assert (await client.get("/healthz")).status_code == 200

        before = await stored_count(service.app_dsn)
        refused = await client.post("/v1/streams/s/events",
                                    json={"events": [{"type": "x", "payload": {}}]})
        assert assert_standard_error(refused, 503, "system_halted")
        assert await stored_count(service.app_dsn) == before

        state = (await client.get("/v1/state")).json()
        assert state["halted"] is True
        assert "suspicious export" in state["halt_reason"]
        assert "alice" in state["halt_reason"]

        text = (await client.get("/metrics")).text
    assert metric(text, "canonlog_ledger_halted") == 1
    assert metric(text, 'canonlog_appends_total{outcome="ok"}') == 1
    assert metric(text, 'canonlog_appends_total{outcome="system_halted"}') == 1
    assert metric(text, 'canonlog_append_seconds_count') == 1
    assert metric(text, 'canonlog_http_requests_total{method="POST",route="/v1/halt",status="200"}') == 2
    assert metric(text, 'canonlog_http_requests_total{method="GET",route="/readyz",status="503"}') == 1


async def test_readiness_flips_while_the_writer_has_lost_its_lease_and_back_once_it_holds_it(
        database, tmp_path, auth_config, tokens):
    config = ServiceConfig(auth=auth_config)
    async with running_service(database, tmp_path, config) as service, \
            service.client(headers=tokens.bearer()) as client:
        assert (await client.get("/readyz")).status_code == 200
        admin = await asyncpg.connect(database.admin.uri())
        try:
            # Cut the writer's lease session and hold the lock ourselves, as another
            # process taking over would.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = $1::integer::oid AND objid = hashtext('main')::oid", LEASE_LOCK_CLASS)
            for _ in range(200):  # the lock is freed once the terminated backend has exited
                if await admin.fetchval("SELECT pg_try_advisory_lock($1::integer, hashtext('main'))",
                                        LEASE_LOCK_CLASS):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the lease lock was not freed")
            error = await _await_status(client, 503)
            assert error["details"]["checks"]["lease"] == "lost"
            refused = await client.post("/v1/streams/s/events",
                                        json={"events": [{"type": "x", "payload": {}}]})
            assert_standard_error(refused, 503, "writer_lease_lost")
        finally:
            await admin.close()
        await _await_status(client, 200)
        metrics = (await client.get("/metrics")).text
    assert metric(metrics, "canonlog_writer_lease_held") == 1


async def _await_status(client, status: int) -> dict:
    for _ in range(200):
        response = await client.get("/readyz")
        if response.status_code == status:
            return response.json().get("error", {})
        await asyncio.sleep(0.05)
    raise AssertionError(f"readiness never became {status}: {response.text}")


async def test_a_loopback_service_without_authentication_serves_every_scope(database, tmp_path):
    config = ServiceConfig(host="127.0.0.1", auth=AuthConfig(required=False))
    async with running_service(database, tmp_path, config) as service, service.client() as client:
        appended = await client.post("/v1/streams/open/events",
                                     json={"events": [{"type": "x", "payload": {"a": 1}}]})
        assert appended.status_code == 201
        assert (await client.get("/v1/head")).json()["sequence"] == appended.json()["sequence"]
        assert re.fullmatch(r"[0-9a-f]{64}", appended.json()["hash"])


async def test_readiness_fails_while_checkpoints_lag_beyond_their_bound_and_the_metrics_show_it(
        database, tmp_path, auth_config, tokens):
    key_file = tmp_path / "checkpoint.key"
    generate_key_file(key_file)
    # A publisher that would not publish during the test, held to a bound of two events.
    extra = {"checkpoint_dir": tmp_path / "checkpoints", "checkpoint_key_file": key_file,
             "checkpoint_every_events": 1000, "checkpoint_every_seconds": 600,
             "checkpoint_ready_max_lag_events": 2}
    settings = service_settings(database.app, database.admin, tmp_path / "data", **extra)
    source = service_config(settings.model_copy(update={"auth_required": False})).checkpoints
    assert source is not None and source.lag_bound is not None
    assert source.lag_bound.seconds == 1800
    async with running_service(database, tmp_path / "data", ServiceConfig(
            auth=auth_config, checkpoints=source), **extra) as service, \
            service.client(headers=tokens.bearer()) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        for n in range(3):
            await client.post("/v1/streams/s/events", json={"events": [{"type": "x", "payload": {"n": n}}]})
        head = (await client.get("/v1/head")).json()["sequence"]
        published = max((await client.get("/v1/checkpoints")).json()["sequences"], default=0)

        error = assert_standard_error(await client.get("/readyz"), 503, "not_ready")
        assert error["details"]["checks"]["checkpoint_lag"].startswith(f"{head - published} events")
        assert [r for r in error["details"]["reasons"] if r.startswith("checkpoint lag:")], error
        text = (await client.get("/metrics")).text
        assert metric(text, "canonlog_checkpoint_lag_events") == head - published
        assert metric(text, "canonlog_checkpoint_lag_seconds") >= 0
        assert metric(text, "canonlog_append_queue_depth") == 0
        assert metric(text, 'canonlog_appends_total{outcome="ok"}') == 3
        # Three sequential appends are three batches of one request and one event each.
        assert metric(text, "canonlog_writer_batch_requests_count") == 3
        assert metric(text, "canonlog_writer_batch_events_sum") == 3
