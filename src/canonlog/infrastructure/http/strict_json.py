"""Request bodies parsed strictly: duplicate keys, NaN and Infinity are refused, not merged.

Python's json module, which FastAPI uses, keeps the last of two equal keys and
reads NaN. A ledger stores what it was sent, so the service refuses both before
anything is validated; the payload rules themselves (integer range, U+0000,
lone surrogates, depth, size) are the canonical encoder's, applied per event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from canonlog.infrastructure.http.errors import ApiError

#: Integer tokens longer than this are refused unread (int() of huge digit strings is slow).
_MAX_INT_CHARS = 100


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_json", message)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _invalid(f"the body has the key {key!r} twice in one object")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise _invalid(f"the body contains {name}, which is not a JSON number")


def _bounded_int(digits: str) -> int:
    if len(digits) > _MAX_INT_CHARS:
        raise _invalid(f"the body contains an integer of {len(digits)} characters")
    return int(digits)


def strict_json(body: bytes) -> Any:
    """Parses a request body; raises ApiError 400 (invalid_json) naming the problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise _invalid(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _invalid("the body nests too deeply") from None


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose JSON bodies are parsed by strict_json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
