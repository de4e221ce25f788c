"""The ASGI middleware every request passes: request id, timing, body limit, last-resort errors.

It is plain ASGI rather than Starlette's BaseHTTPMiddleware, so responses stream
through untouched and the body limit applies while the body is read.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from canonlog.infrastructure.http.errors import ApiError, error_body
from canonlog.infrastructure.http.metrics import ServiceMetrics

log = structlog.get_logger("canonlog.http")

REQUEST_ID_HEADER = "x-request-id"
#: A caller's request id is kept when it is 1-128 characters of this set; anything
#: else (empty, too long, spaces, control characters) is replaced by a fresh UUID.
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _WELL_FORMED_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large",
                         f"the request body is larger than the limit of {limit} bytes",
                         details={"limit_bytes": limit})


class RequestContextMiddleware:
    """Binds a request id into structlog's context, times the request, limits its body,
    counts it by route and status, and answers any exception no handler took with a 500
    in the standard body."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=scope["method"],
                                               path=scope["path"])
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                elapsed = time.perf_counter() - started
                headers.append((b"x-process-time", f"{elapsed:.6f}".encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            declared = self._declared_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._send_error(send_with_headers, BodyTooLarge(self.max_body_bytes))
            else:
                await self.app(scope, self._limited(receive), send_with_headers)
        except Exception:
            log.exception("unhandled error")
            if not response_started:
                await self._send_error(send_with_headers, ApiError(
                    500, "internal_error",
                    f"the service failed to handle the request (request id {request_id})"))
        finally:
            route = _route_of(scope)
            self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.http_seconds.labels(route).observe(time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()

    @staticmethod
    def _declared_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    def _limited(self, receive: Receive) -> Receive:
        # A body sent without Content-Length (chunked) is counted as it arrives.
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited_receive

    @staticmethod
    async def _send_error(send: Send, error: ApiError) -> None:
        body = orjson.dumps(error_body(error.code, error.message, error.details))
        headers: MutableMapping[str, Any] = {
            "content-type": "application/json", "content-length": str(len(body))}
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [(k.encode(), str(v).encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": body})
