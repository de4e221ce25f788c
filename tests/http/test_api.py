"""Each endpoint of the ledger API, against the real server and database."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from canonlog.domain.hashing import event_hash_v1
from canonlog.infrastructure.bootstrap import service_config
from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.keyfiles import generate_key_file
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.http.conftest import running_service, service_settings
from tests.support.ledgers import as_superuser


def event(kind: str = "placed", **payload: object) -> dict[str, object]:
    return {"type": kind, "payload": payload}


async def stored_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM canonlog.events"))
    finally:
        await conn.close()


async def finished_run(client, location: str) -> dict:
    for _ in range(200):
        run = (await client.get(location)).json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"verification still running: {run}")


async def test_an_append_is_answered_201_with_its_receipt_and_reads_back_as_recorded(shared, tokens):
    stream = f"order-{uuid.uuid4().hex[:8]}"
    async with shared.client(headers=tokens.bearer()) as client:
        response = await client.post(f"/v1/streams/{stream}/events", json={
            "events": [event(amount=120), event("paid", amount=120)],
            "expected_version": "no_stream", "task_id": "checkout", "correlation_id": "c-1"})
        assert response.status_code == 201, response.text
        receipt = response.json()
        assert receipt["stream_id"] == stream
        assert receipt["stream_version"] == 2
        assert [e["stream_version"] for e in receipt["events"]] == [1, 2]
        assert receipt["sequence"] == receipt["events"][1]["sequence"]
        assert response.headers["location"] == f"/v1/events/{receipt['sequence']}"

        page = (await client.get(f"/v1/streams/{stream}/events")).json()
        assert [e["payload"] for e in page["events"]] == [{"amount": 120}, {"amount": 120}]
        assert page["events"][1]["hash"] == receipt["hash"]
        assert page["events"][0]["task_id"] == "checkout"
        assert page["next_from_version"] is None

        one = await client.get(f"/v1/events/{receipt['sequence']}")
        assert one.status_code == 200
        assert one.json()["event_type"] == "paid"

    log = await AsyncpgEventLog.connect(shared.app_dsn, max_size=1)
    try:
        recorded = await log.read_stream("main", stream)
    finally:
        await log.close()
    assert [e.hash.hex() for e in recorded] == [e["hash"] for e in receipt["events"]]
    assert all(e.hash == event_hash_v1(e) for e in recorded)


async def test_a_retry_with_the_same_idempotency_key_returns_the_original_receipt(shared, tokens):
    stream = f"pay-{uuid.uuid4().hex[:8]}"
    key = {"Idempotency-Key": f"exec-{uuid.uuid4()}"}
    body = {"events": [event(amount=5)]}
    async with shared.client(headers=tokens.bearer()) as client:
        first = await client.post(f"/v1/streams/{stream}/events", json=body, headers=key)
        before = await stored_count(shared.app_dsn)
        retry = await client.post(f"/v1/streams/{stream}/events", json=body, headers=key)
        assert first.status_code == 201
        assert retry.status_code == 200
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()

        other = await client.post(f"/v1/streams/{stream}/events", json={"events": [event(amount=6)]},
                                  headers=key)
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_conflict"
        assert await stored_count(shared.app_dsn) == before


async def test_a_stale_expected_version_is_a_409_naming_the_versions_and_writes_nothing(shared, tokens):
    stream = f"cart-{uuid.uuid4().hex[:8]}"
    async with shared.client(headers=tokens.bearer()) as client:
        await client.post(f"/v1/streams/{stream}/events", json={"events": [event()]})
        before = await stored_count(shared.app_dsn)
        response = await client.post(f"/v1/streams/{stream}/events",
                                     json={"events": [event()], "expected_version": "no_stream"})
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "concurrency_conflict"
        assert error["details"]["stream_id"] == stream
        assert error["details"]["actual_version"] == 1
        exact = await client.post(f"/v1/streams/{stream}/events",
                                  json={"events": [event()], "expected_version": 1})
        assert exact.status_code == 201
        assert await stored_count(shared.app_dsn) == before + 1


async def test_stream_ids_may_contain_slashes_and_streams_read_in_pages(shared, tokens):
    stream = f"tenant/{uuid.uuid4().hex[:8]}/orders"
    async with shared.client(headers=tokens.bearer()) as client:
        for number in range(5):
            response = await client.post(f"/v1/streams/{stream}/events",
                                         json={"events": [event(n=number)]})
            assert response.status_code == 201
        first = (await client.get(f"/v1/streams/{stream}/events", params={"limit": 2})).json()
        assert [e["payload"]["n"] for e in first["events"]] == [0, 1]
        rest = (await client.get(f"/v1/streams/{stream}/events",
                                 params={"from_version": first["next_from_version"]})).json()
        assert [e["payload"]["n"] for e in rest["events"]] == [2, 3, 4]
        assert rest["events"][0]["stream_id"] == stream


async def test_all_events_read_in_pages_after_a_sequence_and_the_head_is_the_last(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        head = (await client.get("/v1/head")).json()
        for number in range(3):
            await client.post("/v1/streams/paging/events", json={"events": [event(n=number)]})
        page = (await client.get("/v1/events", params={"after": head["sequence"], "limit": 2})).json()
        assert [e["sequence"] for e in page["events"]] == [head["sequence"] + 1, head["sequence"] + 2]
        assert page["more"] is True
        rest = (await client.get("/v1/events", params={"after": page["next_after"]})).json()
        assert rest["more"] is False
        new_head = (await client.get("/v1/head")).json()
        assert rest["events"][-1]["sequence"] == new_head["sequence"]
        assert rest["events"][-1]["hash"] == new_head["hash"]
        assert all(e["prev_hash"] == p["hash"] for p, e in
                   zip(page["events"] + rest["events"], (page["events"] + rest["events"])[1:],
                       strict=False))


async def test_the_state_names_the_grant_and_the_writer(shared, tokens):
    async with shared.client(headers=tokens.bearer("read")) as client:
        state = (await client.get("/v1/state")).json()
    assert state == {"ledger_id": "main", "grant_writer_id": "writer-1", "grant_epoch": 1,
                     "halted": False, "halt_reason": None, "writer_id": "writer-1",
                     "writer_state": "accepting"}


async def test_a_verification_runs_in_the_background_and_reports_the_whole_chain(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        await client.post("/v1/streams/verified/events", json={"events": [event()]})
        head = (await client.get("/v1/head")).json()
        started = await client.post("/v1/verifications")
        assert started.status_code == 202
        assert started.json()["status"] == "running"
        run = await finished_run(client, started.headers["location"])
        assert run["status"] == "passed", run
        assert run["events_checked"] >= head["sequence"]
        assert run["breaks"] == []
        assert run["finished_at"] >= run["started_at"]
        missing = await client.get("/v1/verifications/unknown")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "verification_not_found"


async def test_checkpoints_are_a_404_when_no_directory_is_configured(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        response = await client.get("/v1/checkpoints/latest")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "checkpoints_not_configured"


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_the_openapi_document_and_its_docs_are_served(shared, path):
    async with shared.client() as client:
        response = await client.get(path)
    assert response.status_code == 200
    if path == "/openapi.json":
        document = response.json()
        assert "/v1/streams/{stream_id}/events" in document["paths"]
        assert "HTTPBearer" in document["components"]["securitySchemes"]


async def test_checkpoints_published_by_the_writer_are_served_parsed_and_raw(
        database, tmp_path, auth_config, tokens):

    key_file = tmp_path / "checkpoint.key"
    generate_key_file(key_file)
    extra = {"checkpoint_dir": tmp_path / "checkpoints", "checkpoint_key_file": key_file,
             "checkpoint_every_events": 2, "checkpoint_every_seconds": 0.2}
    settings = service_settings(database.app, database.admin, tmp_path / "data", **extra)
    source = service_config(settings.model_copy(update={"auth_required": False})).checkpoints
    assert source is not None
    config = ServiceConfig(auth=auth_config, checkpoints=source)
    async with running_service(database, tmp_path / "data", config, **extra) as service, \
            service.client(headers=tokens.bearer()) as client:
        for number in range(3):
            await client.post("/v1/streams/c/events", json={"events": [event(n=number)]})
        head = (await client.get("/v1/head")).json()
        for _ in range(100):
            latest = await client.get("/v1/checkpoints/latest")
            if latest.status_code == 200 and latest.json()["sequence"] == head["sequence"]:
                break
            await asyncio.sleep(0.05)
        checkpoint = latest.json()
        assert checkpoint["head_hash"] == head["hash"]
        assert checkpoint["trusted"] is True
        assert checkpoint["signed_by"] == ["canonlog/main"]
        listed = (await client.get("/v1/checkpoints")).json()["sequences"]
        assert listed[0] == head["sequence"]
        by_sequence = (await client.get(f"/v1/checkpoints/{head['sequence']}")).json()
        assert by_sequence == checkpoint
        note = await client.get(f"/v1/checkpoints/{head['sequence']}/note")
        assert note.headers["content-type"].startswith("text/plain")
        assert note.content.startswith(b"canonlog/main\n%d\n" % head["sequence"])
        stored = await source.store.load("main", head["sequence"])
        assert stored is not None
        assert note.content == stored.note
        missing = await client.get("/v1/checkpoints/999999")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "checkpoint_not_found"
        started = (await client.post("/v1/verifications")).json()
        run = await finished_run(client, f"/v1/verifications/{started['id']}")
        assert run["status"] == "passed", run
        assert run["checkpoints_checked"] >= 1
        listed_runs = (await client.get("/v1/verifications")).json()["runs"]
        assert listed_runs[0]["id"] == started["id"]
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["checkpoint_lag"] == "0 events, 0 s"

        # A stray cosignature is not served with the note; a note forged under the
        # trusted key fails the next verification run.
        directory = tmp_path / "checkpoints" / "main"
        (directory / f"{head['sequence']:020d}.junk.cosignature").write_bytes(b"junk\n")
        again = await client.get(f"/v1/checkpoints/{head['sequence']}/note")
        assert again.content == stored.note
        assert (await client.get("/v1/checkpoints/latest")).json()["trusted"] is True
        forged = stored.note.replace(b"\n%d\n" % head["sequence"], b"\n1\n", 1)
        (directory / f"{1:020d}.checkpoint").write_bytes(forged)
        started = (await client.post("/v1/verifications")).json()
        run = await finished_run(client, f"/v1/verifications/{started['id']}")
        assert run["status"] == "failed", run
        assert "tamper evidence: checkpoint " in run["summary"]



async def test_a_verification_names_the_first_edited_event_and_the_metrics_show_it(
        database, tmp_path, auth_config, tokens):

    async with running_service(database, tmp_path, ServiceConfig(auth=auth_config)) as service, \
            service.client(headers=tokens.bearer()) as client:
        receipts = [(await client.post("/v1/streams/t/events", json={"events": [event(n=n)]})).json()
                    for n in range(3)]
        edited = receipts[1]["sequence"]
        await as_superuser(database.admin.uri(), "UPDATE canonlog.events SET payload = "
                           f"convert_to('{{\"n\":99}}', 'UTF8') WHERE seq = {edited}")
        started = await client.post("/v1/verifications")
        run = await finished_run(client, started.headers["location"])
        metrics = (await client.get("/metrics")).text
    assert run["status"] == "failed"
    assert run["breaks"][0]["sequence"] == edited
    assert run["breaks"][0]["kind"] == "hash_mismatch"
    assert "canonlog_last_verification_ok 0.0" in metrics
