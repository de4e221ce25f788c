"""The live tail: every event after a sequence, then each new one as it commits, as
Server-Sent Events and over a WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from canonlog.domain.canonical import INT_MAX
from canonlog.domain.errors import CanonlogError
from canonlog.domain.events import RecordedEvent
from canonlog.infrastructure.http.auth import check_policy, policy_input, principal_for
from canonlog.infrastructure.http.errors import ApiError
from canonlog.infrastructure.http.models import EventOut
from canonlog.infrastructure.http.routes_ledger import Reader, Service, errors
from canonlog.infrastructure.http.service import LedgerService

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


# -- the same tail over a WebSocket ------------------------------------------------------------


def _bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _message_error(code: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"code": code, "message": message, "details": {}}}


class _TailSocket:
    """One WebSocket connection: its subscription, and one sender at a time."""

    def __init__(self, websocket: WebSocket, service: LedgerService) -> None:
        self.websocket = websocket
        self.service = service
        self.subscription: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    async def send(self, message: dict[str, object]) -> None:
        async with self._sending:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            await self.send(_message_error("invalid_message", "the message is not JSON"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "subscribe":
            after = message.get("after", 0)
            if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= INT_MAX:
                await self.send(_message_error("invalid_message", "after must be a sequence >= 0"))
                return
            await self.unsubscribe()
            await self.send({"type": "subscribed", "after": after})
            self.subscription = asyncio.create_task(self._forward(after), name="canonlog-ws-tail")
        else:
            await self.send(_message_error(
                "invalid_message", "a message is {\"type\": \"subscribe\", \"after\": N} or "
                                   "{\"type\": \"ping\"}"))

    async def _forward(self, after: int) -> None:
        try:
            async for event in self.service.client.subscribe(after=after, poll_interval=1.0):
                await self.send({"type": "event",
                                 "event": EventOut.of(event).model_dump(mode="json")})
        except CanonlogError as exc:
            log.error("websocket tail failed", error=str(exc))
            await self.send(_message_error("tail_failed", "reading the ledger failed"))

    async def unsubscribe(self) -> None:
        if self.subscription is not None:
            self.subscription.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await self.subscription
            self.subscription = None


@router.websocket("/ws")
async def websocket_tail(websocket: WebSocket) -> None:
    """The live tail over a WebSocket (scope read): send {"type": "subscribe", "after": N}
    to receive {"type": "event", "event": ...} messages from sequence N + 1 on, and
    {"type": "ping"} for a {"type": "pong"}. A refused token closes the handshake (403)."""
    state = websocket.app.state
    try:
        principal = principal_for(state, _bearer_token(websocket.headers.get("authorization")),
                                  "read")
        check_policy(state, policy_input(state, principal, "websocket_tail"))
    except ApiError as exc:
        await websocket.close(code=1008, reason=exc.message[:100])
        return
    await websocket.accept()
    connection = _TailSocket(websocket, state.service)
    try:
        while True:
            await connection.handle(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        await connection.unsubscribe()
