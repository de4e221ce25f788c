"""Every error in the standard body, every response with its request id and timing, and bad
input refused by name with nothing written."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from canonlog.infrastructure.http import ServiceConfig
from tests.http.conftest import running_service
from tests.http.test_api import stored_count


def assert_standard_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    assert re.fullmatch(r"[0-9a-f]{32}|[\w.:/+=@-]+", response.headers["x-request-id"])
    assert float(response.headers["x-process-time"]) >= 0
    return body["error"]


async def test_unknown_paths_and_methods_are_404_and_405_in_the_standard_body(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        assert_standard_error(await client.get("/v1/nothing-here"), 404, "not_found")
        assert_standard_error(await client.delete("/v1/head"), 405, "method_not_allowed")
        # Two routes serve this path, one per method: Allow names both.
        not_allowed = await client.delete("/v1/streams/s/events")
        assert_standard_error(not_allowed, 405, "method_not_allowed")
        assert not_allowed.headers["allow"] == "GET, POST"
        assert_standard_error(await client.get("/v1/events/999999"), 404, "event_not_found")


BAD_BODIES = [
    # (what, raw body, status, code, words the message names)
    ("malformed JSON", b'{"events": [', 400, "invalid_json", "not valid JSON"),
    ("not UTF-8", b'{"events": "\xff"}', 400, "invalid_json", "UTF-8"),
    ("a key twice", b'{"events": [{"type": "x", "payload": {"a": 1, "a": 2}}]}', 400, "invalid_json",
     "twice"),
    ("NaN", b'{"events": [{"type": "x", "payload": {"a": NaN}}]}', 400, "invalid_json", "NaN"),
    ("an unknown field", b'{"events": [{"type": "x", "payload": {}}], "colour": 1}', 422,
     "invalid_request", "colour"),
    ("a wrong type", b'{"events": [{"type": "x", "payload": [1]}]}', 422, "invalid_request",
     "payload"),
    ("no events", b'{"events": []}', 422, "invalid_request", "events"),
    ("a bad expected version", b'{"events": [{"type": "x", "payload": {}}], "expected_version": '
     b'"later"}', 422, "invalid_request", "expected_version"),
    ("expected version 0", b'{"events": [{"type": "x", "payload": {}}], "expected_version": 0}',
     422, "invalid_request", "expected_version"),
    ("U+0000 in a payload", b'{"events": [{"type": "x", "payload": {"a": "\\u0000"}}]}', 422,
     "invalid_event", "U+0000"),
    ("an integer out of range", b'{"events": [{"type": "x", "payload": {"a": 9223372036854775808}}]}',
     422, "invalid_event", "64-bit"),
    ("a lone surrogate", b'{"events": [{"type": "x", "payload": {"a": "\\ud800"}}]}', 422,
     "invalid_event", "surrogate"),
    ("an unprintable event type", b'{"events": [{"type": "a\\nb", "payload": {}}]}', 422,
     "invalid_event", "event_type"),
]


@pytest.mark.parametrize(("what", "body", "status", "code", "named"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
async def test_bad_input_is_refused_by_name_and_writes_nothing(shared, tokens, what, body, status,
                                                               code, named):
    before = await stored_count(shared.app_dsn)
    async with shared.client(headers=tokens.bearer()) as client:
        response = await client.post("/v1/streams/bad-input/events", content=body,
                                     headers={"content-type": "application/json"})
    error = assert_standard_error(response, status, code)
    assert named in error["message"] or named in str(error["details"])
    assert await stored_count(shared.app_dsn) == before


@pytest.mark.parametrize("stream", ["$ledger", "%24system"])
async def test_the_ledgers_own_streams_are_refused(shared, tokens, stream):
    before = await stored_count(shared.app_dsn)
    async with shared.client(headers=tokens.bearer()) as client:
        response = await client.post(f"/v1/streams/{stream}/events",
                                     json={"events": [{"type": "x", "payload": {}}]})
    assert "reserved" in assert_standard_error(response, 422, "invalid_event")["message"]
    assert await stored_count(shared.app_dsn) == before


async def test_a_body_over_the_limit_is_a_413_declared_or_streamed(shared, tokens):
    before = await stored_count(shared.app_dsn)
    oversize = b'{"events": [{"type": "x", "payload": {"a": "' + b"x" * 70_000 + b'"}}]}'

    async def chunks():
        for start in range(0, len(oversize), 8192):
            yield oversize[start:start + 8192]

    async with shared.client(headers=tokens.bearer()) as client:
        declared = await client.post("/v1/streams/big/events", content=oversize,
                                     headers={"content-type": "application/json"})
        streamed = await client.post("/v1/streams/big/events", content=chunks(),
                                     headers={"content-type": "application/json"})
    for response in (declared, streamed):
        error = assert_standard_error(response, 413, "payload_too_large")
        assert error["details"] == {"limit_bytes": 64 * 1024}
    assert await stored_count(shared.app_dsn) == before


async def test_a_well_formed_request_id_is_kept_and_any_other_replaced(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        kept = await client.get("/v1/head", headers={"X-Request-ID": "req-42.a:b"})
        replaced = await client.get("/v1/head", headers={"X-Request-ID": "no spaces allowed"})
        too_long = await client.get("/v1/head", headers={"X-Request-ID": "x" * 129})
    assert kept.headers["x-request-id"] == "req-42.a:b"
    for response in (replaced, too_long):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert float(kept.headers["x-process-time"]) >= 0


async def test_query_parameters_out_of_range_are_422(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        error = assert_standard_error(await client.get("/v1/events", params={"limit": 0}), 422,
                                      "invalid_request")
        assert error["details"]["errors"][0]["location"] == ["query", "limit"]
        assert_standard_error(await client.get("/v1/events", params={"after": "x"}), 422,
                              "invalid_request")


async def test_an_unexpected_exception_is_a_500_in_the_standard_body_without_a_trace(
        database, tmp_path, auth_config):
    def add_failing_route(app: FastAPI) -> None:
        async def fail() -> None:
            raise RuntimeError("secret internals: password=hunter2")

        app.add_api_route("/v1/fail", fail)

    config = ServiceConfig(auth=auth_config)
    async with running_service(database, tmp_path, config, add_failing_route) as service, \
            service.client() as client:
        response = await client.get("/v1/fail", headers={"X-Request-ID": "boom-1"})
    error = assert_standard_error(response, 500, "internal_error")
    assert "boom-1" in error["message"]
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


async def test_the_operator_views_files_are_served_and_a_missing_one_is_a_standard_404(shared):
    async with shared.client() as client:
        script = await client.get("/ui/app.js")
        missing = await client.get("/ui/nothing-here.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "script-src 'self'" in script.headers["content-security-policy"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert_standard_error(missing, 404, "not_found")
