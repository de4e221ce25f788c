"""Every adapter holds payloads and metadata to canonical JSON v1, whoever built the
event: bytes canonical JSON v1 refuses are refused with the same words, and
canonical bytes are stored exactly."""

from __future__ import annotations

import pytest

from canonlog.application.ports import EventLog, append_one
from canonlog.domain.errors import InvalidEvent
from canonlog.domain.events import AppendRequest, NewEvent
from tests.support.refused_json import ACCEPTED, REFUSED


@pytest.mark.parametrize(("payload", "problem"), REFUSED)
async def test_bytes_canonical_json_refuses_are_refused_by_name(
        event_log: EventLog, payload: bytes, problem: str) -> None:
    grant = await event_log.acquire_grant("main", "writer-a")
    head = await event_log.head("main")
    with pytest.raises(InvalidEvent) as caught:
        await append_one(event_log, grant, AppendRequest("s", (NewEvent("x", payload),)))
    assert str(caught.value) == f"event 1 of the batch: payload {problem}"
    with pytest.raises(InvalidEvent) as caught:
        await event_log.append_batch(grant, [
            AppendRequest("s", (NewEvent("x", b"{}"), NewEvent("x", b"{}", payload)))])
    assert str(caught.value) == f"event 2 of the batch: metadata {problem}"
    assert await event_log.head("main") == head


async def test_canonical_bytes_are_stored_exactly(event_log: EventLog) -> None:
    grant = await event_log.acquire_grant("main", "writer-a")
    result = await append_one(event_log, grant, AppendRequest(
        "s", tuple(NewEvent("x", payload, payload) for payload in ACCEPTED)))
    assert [(e.payload, e.metadata) for e in result.events] == [(p, p) for p in ACCEPTED]
