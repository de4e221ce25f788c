"""The one error body of the service, and canonlog's errors mapped to HTTP statuses.

Every error response, whatever raised it (a route, routing itself, request
validation, a canonlog error, an unexpected exception), is
``{"error": {"code", "message", "details"}}``. Unexpected exceptions are logged
with their traceback and answered with a generic message: no stack trace ever
reaches a client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from canonlog.domain import errors as canonlog_errors
from canonlog.domain.errors import CanonlogError

log = structlog.get_logger("canonlog.http")


class ApiError(HTTPException):
    """An error the service answers with the standard body: a status, a code and a message."""

    def __init__(self, status: int, code: str, message: str, *,
                 details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, message, dict(headers) if headers else None)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


#: Statuses of canonlog's errors; a class not listed takes its nearest listed base's.
STATUS_BY_ERROR: dict[type[CanonlogError], int] = {
    canonlog_errors.InvalidEvent: 422,
    canonlog_errors.ConcurrencyConflict: 409,
    canonlog_errors.IdempotencyConflict: 409,
    canonlog_errors.SystemHalted: 503,
    canonlog_errors.StaleWriter: 503,
    canonlog_errors.GrantUnavailable: 503,
    canonlog_errors.WriterLeaseLost: 503,
    canonlog_errors.WriterNotVerified: 503,
    canonlog_errors.WriterInconsistency: 503,
    canonlog_errors.StorageError: 503,
    canonlog_errors.AppendOutcomeUnknown: 503,
    canonlog_errors.LedgerNotFound: 404,
    canonlog_errors.CeremonyNotFound: 404,
    canonlog_errors.CeremonyError: 409,
    canonlog_errors.OperatorLoginMissing: 503,
    canonlog_errors.CheckpointConflict: 409,
    canonlog_errors.AppendOnlyViolation: 403,
    canonlog_errors.TamperDetected: 500,
    canonlog_errors.InvalidCommand: 422,
    canonlog_errors.WriteDenied: 403,
    canonlog_errors.GovernedStreamRefused: 403,
    canonlog_errors.TicketNotFound: 404,
    canonlog_errors.GatewayError: 409,
    canonlog_errors.GatewayPolicyError: 503,
    canonlog_errors.InvalidSaga: 422,
    canonlog_errors.SagaNotFound: 404,
    canonlog_errors.SagaError: 409,
    canonlog_errors.BackendUnavailable: 503,
    canonlog_errors.BackendRejected: 422,
    canonlog_errors.WebhookRejected: 401,
    canonlog_errors.ConsumerNotFound: 404,
    canonlog_errors.RelayError: 409,
}

#: Codes of the statuses the service answers without a more specific code.
_CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_code(error: CanonlogError) -> str:
    """The error's code: its class name in snake case (ConcurrencyConflict: concurrency_conflict)."""
    return _snake(type(error).__name__)


def error_status(error: CanonlogError) -> int:
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def error_details(error: CanonlogError) -> dict[str, Any]:
    if isinstance(error, canonlog_errors.ConcurrencyConflict):
        expected = error.expected
        return {"stream_id": error.stream_id,
                "expected_version": getattr(expected, "value", expected),
                "actual_version": error.actual}
    if isinstance(error, canonlog_errors.WriteDenied):
        return {"kind": error.kind}
    if isinstance(error, canonlog_errors.SystemHalted) and error.reason is not None:
        return {"halt_reason": error.reason}
    return {}


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def error_response(status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status,
                        headers=dict(headers) if headers else None)


def canonlog_error_response(error: CanonlogError) -> JSONResponse:
    status = error_status(error)
    if status >= 500:
        log.error("request failed", error=error_code(error), message=str(error))
    return error_response(status, error_code(error), str(error), error_details(error))


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be large, or a secret sent in the wrong field.
    return [{"location": [str(part) for part in item.get("loc", ())],
             "message": str(item.get("msg", "")), "type": str(item.get("type", ""))}
            for item in exc.errors()]


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
    try:
        message = HTTPStatus(exc.status_code).phrase
    except ValueError:
        message = "error"
    if isinstance(exc.detail, str) and exc.detail:
        message = exc.detail
    if exc.status_code == 404:
        message = f"no resource at {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        headers["Allow"] = ", ".join(_allowed_methods(request))
    code = _CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, message, None, headers)


def _allowed_methods(request: Request) -> list[str]:
    # Routing stops at the first route whose path matches, so a path served by one
    # route per method would otherwise name only that route's methods.
    routes: list[APIRoute] = request.app.state.api_routes
    path = request.url.path
    return sorted({m for r in routes if r.path_regex.match(path) for m in r.methods or ()})


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    first = details[0] if details else {"location": [], "message": "invalid request"}
    where = ".".join(first["location"])
    message = f"{where}: {first['message']}" if where else str(first["message"])
    return error_response(422, "invalid_request", message, {"errors": details})


async def _on_canonlog_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CanonlogError)
    return canonlog_error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Routes every error raised below the middleware to the standard body."""
    app.add_exception_handler(StarletteHTTPException, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(CanonlogError, _on_canonlog_error)
