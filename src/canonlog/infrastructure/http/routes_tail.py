"""The live tail: every event after a sequence, then each new one as it commits, as
Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from canonlog.domain.canonical import INT_MAX
from canonlog.domain.events import RecordedEvent
from canonlog.infrastructure.http.models import EventOut
from canonlog.infrastructure.http.routes_ledger import Reader, Service, errors

log = structlog.get_logger("canonlog.http")

#: Seconds of quiet after which a comment line keeps proxies from closing the stream.
KEEPALIVE_SECONDS: Final = 15.0
#: Events read ahead of a slow client before the reader waits for it.
_BUFFER: Final = 256

router = APIRouter(prefix="/v1", responses=errors(401, 403, 422))


def _frame(event: RecordedEvent) -> bytes:
    data = EventOut.of(event).model_dump_json()
    return f"id: {event.sequence}\nevent: event\ndata: {data}\n\n".encode()


async def _frames(service_tail: AsyncIterator[RecordedEvent], keepalive: float) -> AsyncIterator[bytes]:
    # The subscription waits for new events on its own; a reader task hands them over
    # through a bounded queue, so that quiet periods can be filled with keepalives.
    queue: asyncio.Queue[RecordedEvent | BaseException] = asyncio.Queue(_BUFFER)

    async def read() -> None:
        try:
            async for event in service_tail:
                await queue.put(event)
        except Exception as exc:
            log.error("live tail failed", error=str(exc), error_type=type(exc).__name__)
            await queue.put(exc)

    reader = asyncio.create_task(read(), name="canonlog-tail-reader")
    try:
        yield b"retry: 2000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if isinstance(item, BaseException):
                yield b"event: error\ndata: {\"code\": \"tail_failed\"}\n\n"
                return
            yield _frame(item)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


@router.get(
    "/tail", summary="Live tail (Server-Sent Events)", response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "one `event` per recorded event: id is its sequence, "
                                    "data its JSON (as GET /v1/events/{sequence})"}},
)
async def tail(
    service: Service, principal: Reader,
    after: Annotated[int, Query(ge=0, le=INT_MAX, description="start after this sequence")] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Streams every event after `after`, in sequence order, then each new one as it
    commits. A reconnecting EventSource sends Last-Event-ID and resumes after it."""
    if last_event_id is not None and last_event_id.isdigit():
        after = max(after, min(int(last_event_id), INT_MAX))
    subscription = service.client.subscribe(after=after, poll_interval=1.0)
    return StreamingResponse(
        _frames(subscription, KEEPALIVE_SECONDS), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
