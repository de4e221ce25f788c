"""The live tail over Server-Sent Events receives what is there and what is appended next."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest


async def read_events(lines, count: int) -> list[dict]:
    """The data of the next count `event` frames from an SSE stream's lines."""
    events: list[dict] = []
    kind = None
    async for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind == "event":
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {len(events)} events")


async def test_the_tail_streams_events_after_a_sequence_then_new_appends(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        first = (await client.post("/v1/streams/tailed/events",
                                   json={"events": [{"type": "a", "payload": {"n": 1}}]})).json()
        start = first["sequence"] - 1
        async with client.stream("GET", "/v1/tail", params={"after": start}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-request-id"]
            lines = response.aiter_lines()
            existing = await asyncio.wait_for(read_events(lines, 1), 10)
            assert existing[0]["sequence"] == first["sequence"]
            appended = (await client.post("/v1/streams/tailed/events",
                                          json={"events": [{"type": "b", "payload": {"n": 2}}]})).json()
            new = await asyncio.wait_for(read_events(lines, 1), 10)
        assert new[0]["sequence"] == appended["sequence"]
        assert new[0]["hash"] == appended["hash"]
        assert new[0]["payload"] == {"n": 2}


async def test_a_reconnecting_client_resumes_after_its_last_event_id(shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client:
        receipts = [(await client.post("/v1/streams/resumed/events",
                                       json={"events": [{"type": "x", "payload": {"n": n}}]})).json()
                    for n in range(3)]
        async with client.stream("GET", "/v1/tail", headers={
                "Last-Event-ID": str(receipts[1]["sequence"])}) as response:
            resumed = await asyncio.wait_for(read_events(response.aiter_lines(), 1), 10)
    assert resumed[0]["sequence"] == receipts[2]["sequence"]


async def test_the_tail_needs_the_read_scope(shared, tokens):
    async with shared.client() as client:
        refused = await client.get("/v1/tail", headers=tokens.bearer("append"))
        anonymous = await client.get("/v1/tail")
    assert refused.status_code == 403
    assert anonymous.status_code == 401


async def test_the_websocket_tail_subscribes_from_a_sequence_receives_appends_and_answers_pings(
        shared, tokens):
    async with shared.client(headers=tokens.bearer()) as client, aiohttp.ClientSession() as session:
        first = (await client.post("/v1/streams/ws/events",
                                   json={"events": [{"type": "a", "payload": {"n": 1}}]})).json()
        async with session.ws_connect(f"{shared.url.replace('http', 'ws')}/v1/ws",
                                      headers=tokens.bearer("read")) as socket:
            await socket.send_json({"type": "ping"})
            assert await socket.receive_json(timeout=10) == {"type": "pong"}
            await socket.send_json({"type": "subscribe", "after": first["sequence"] - 1})
            assert await socket.receive_json(timeout=10) == {
                "type": "subscribed", "after": first["sequence"] - 1}
            existing = await socket.receive_json(timeout=10)
            assert existing["type"] == "event"
            assert existing["event"]["hash"] == first["hash"]
            appended = (await client.post("/v1/streams/ws/events",
                                          json={"events": [{"type": "b", "payload": {"n": 2}}]})).json()
            new = await socket.receive_json(timeout=10)
            assert new["event"]["sequence"] == appended["sequence"]
            await socket.send_str("not json")
            assert (await socket.receive_json(timeout=10))["error"]["code"] == "invalid_message"
            await socket.send_json({"type": "subscribe", "after": -1})
            assert (await socket.receive_json(timeout=10))["error"]["code"] == "invalid_message"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}, "append-only"])
async def test_the_websocket_refuses_the_handshake_without_a_reading_token(shared, tokens, headers):
    if headers == "append-only":
        headers = tokens.bearer("append")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{shared.url.replace('http', 'ws')}/v1/ws", headers=headers)
    assert refused.value.status == 403
