"""Sagas over HTTP: create and run, show, list by state, refusals, and the metrics."""

from __future__ import annotations

from pathlib import Path

from canonlog.infrastructure.http.app import ServiceConfig
from canonlog.infrastructure.http.auth import AuthConfig
from tests.http.conftest import running_service
from tests.sagas.conftest import order_steps


class _Prefix:
    prefix = "http"


async def test_sagas_over_http_run_show_list_and_count(database, user_db, redis_url,
                                                       tmp_path: Path):
    config = ServiceConfig(auth=AuthConfig(required=False))
    steps = order_steps(_Prefix())  # type: ignore[arg-type]
    async with running_service(database, tmp_path / "data", config,
                               saga_backend_dsn=user_db.uri(), saga_redis_url=redis_url,
                               saga_files_dir=tmp_path / "files") as service, \
            service.client() as http:
        created = await http.post("/v1/sagas", json={"name": "order", "steps": steps,
                                                     "trace_id": "t-1", "execute": True})
        assert created.status_code == 201, created.text
        saga = created.json()
        assert saga["status"] == "completed" and saga["trace_id"] == "t-1"
        shown = (await http.get(f"/v1/sagas/{saga['saga_id']}")).json()
        assert [e["type"] for e in shown["history"]][-1] == "saga_completed"
        listed = await http.get("/v1/sagas", params={"state": "completed"})
        assert [s["saga_id"] for s in listed.json()] == [saga["saga_id"]]
        refused = await http.post("/v1/sagas", json={"name": "x", "steps": [
            {"step_id": "a", "backend": "mainframe", "operation": "x"}]})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "invalid_saga"
        missing = await http.get("/v1/sagas/3f1c1b1e-0000-4000-8000-000000000000")
        assert missing.status_code == 404
        again = await http.post(f"/v1/sagas/{saga['saga_id']}/execute")
        assert again.status_code == 409
        compensated = await http.post(f"/v1/sagas/{saga['saga_id']}/compensate", json={})
        assert compensated.json()["status"] == "compensated"
        await http.get("/v1/sagas")
        metrics = (await http.get("/metrics")).text
    assert 'canonlog_sagas{state="compensated"} 1.0' in metrics
    assert 'canonlog_saga_step_seconds_count{backend="kv",outcome="succeeded"} 1.0' in metrics
    assert "canonlog_saga_worker_passes " in metrics
    assert 'canonlog_saga_compensations_total{backend="file",outcome="compensated"} 1.0' \
        in metrics


async def test_without_saga_backends_the_routes_say_so(database, tmp_path: Path):
    config = ServiceConfig(auth=AuthConfig(required=False))
    async with running_service(database, tmp_path / "data", config) as service, \
            service.client() as http:
        answer = await http.get("/v1/sagas")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "sagas_not_configured"


