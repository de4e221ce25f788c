"""Webhook intake in the running service: signed deliveries become chained events with
a quick 202, duplicates are answered once, bad signatures, old timestamps and replays
are refused, processing runs in the background, and each delivery's status shows."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest

from canonlog.infrastructure.destinations.webhook import signed_request
from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.http.auth import AuthConfig
from tests.http.conftest import running_service

SECRET = "intake secret of enough length for tests"


@pytest.fixture
async def service(database, tmp_path, projection_dsn):
    async with running_service(database, tmp_path, ServiceConfig(auth=AuthConfig(required=False)),
                               webhook_intake_secret=SECRET, relay_poll_interval=0.05,
                               relay_destinations=f"proj={projection_dsn}") as running:
        yield running


def signed(body: bytes, delivery: str, now: float | None = None) -> dict[str, str]:
    return signed_request(SECRET.encode(), body, delivery, now)


async def webhook_events(dsn: str) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT seq, payload FROM canonlog.events_json "
                                "WHERE event_type = 'webhook.received' ORDER BY seq")
    finally:
        await conn.close()
    return [{"seq": r["seq"], **json.loads(r["payload"])} for r in rows]


async def test_a_signed_delivery_is_recorded_answered_202_and_processed(service):
    body = b'{"order": 7, "status": "paid"}'
    async with service.client() as http:
        response = await http.post("/v1/webhooks/shop", content=body, headers=signed(body, "d-1"))
        assert response.status_code == 202, response.text
        receipt = response.json()
        assert receipt["duplicate"] is False and response.headers["Location"] == \
            "/v1/webhooks/shop/deliveries/d-1"
        again = await http.post("/v1/webhooks/shop", content=body, headers=signed(body, "d-1"))
        assert again.status_code == 202 and again.json()["duplicate"] is True
        assert again.json()["sequence"] == receipt["sequence"]
        for _ in range(200):
            status = (await http.get(receipt["status_url"])).json()
            if status["status"] == "synced":
                break
            await asyncio.sleep(0.02)
        assert status == {"source": "shop", "delivery_id": "d-1", "sequence": receipt["sequence"],
                          "status": "synced", "attempts": 0, "last_error": None}
        consumers = (await http.get("/v1/relay/consumers")).json()["consumers"]
        assert {c["consumer"] for c in consumers} == {"webhook-intake"}
        metrics = (await http.get("/metrics")).text
        assert 'canonlog_relay_lag_events{consumer="webhook-intake"}' in metrics
    (event,) = await webhook_events(service.app_dsn)
    assert event["body"] == {"order": 7, "status": "paid"} and event["delivery_id"] == "d-1"


async def test_concurrent_duplicates_produce_one_event(service):
    body = b'{"n": 1}'
    async with service.client() as http:
        answers = await asyncio.gather(*(http.post("/v1/webhooks/shop", content=body,
                                                   headers=signed(body, "same"))
                                         for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["sequence"] for a in answers}) == 1
    assert len(await webhook_events(service.app_dsn)) == 1


async def test_a_bad_signature_or_timestamp_is_refused_and_records_nothing(service):
    body = b'{"n": 1}'
    async with service.client() as http:
        for tamper in ("body", "signature", "old", "future", "missing"):
            headers = signed(body, "d-x", time.time() - 3600 if tamper == "old" else
                             time.time() + 3600 if tamper == "future" else None)
            if tamper == "signature":
                headers["X-Canonlog-Signature"] = "v1=" + "0" * 64
            if tamper == "missing":
                del headers["X-Canonlog-Signature"]
            sent = b'{"n": 2}' if tamper == "body" else body
            response = await http.post("/v1/webhooks/shop", content=sent, headers=headers)
            assert response.status_code == 401, (tamper, response.text)
            assert response.json()["error"]["code"] == "webhook_rejected", tamper
        status = await http.get("/v1/webhooks/shop/deliveries/d-x")
    assert status.status_code == 404
    assert await webhook_events(service.app_dsn) == []


async def test_a_replayed_delivery_id_with_another_body_records_nothing_new(service):
    async with service.client() as http:
        first = b'{"amount": 10}'
        await http.post("/v1/webhooks/shop", content=first, headers=signed(first, "d-9"))
        replay = b'{"amount": 1000}'
        response = await http.post("/v1/webhooks/shop", content=replay,
                                   headers=signed(replay, "d-9"))
    assert response.json()["duplicate"] is True
    assert [e["body"] for e in await webhook_events(service.app_dsn)] == [{"amount": 10}]


async def test_a_body_that_is_not_json_is_refused(service):
    body = b"not json"
    async with service.client() as http:
        response = await http.post("/v1/webhooks/shop", content=body, headers=signed(body, "d-2"))
    assert response.status_code == 422
