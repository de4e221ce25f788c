"""Canonical JSON v1 as the database holds payloads to it (sql/0006_canonical_json.sql).

The database refuses a payload or metadata that is a JSON object but not in
canonical form, naming the first problem it finds in a fixed order: nesting
deeper than 64 levels, a number out of range, a key twice in one object, then
any other departure from the canonical bytes. json_problem makes the same checks
in the same order with the same words, so both adapters refuse alike.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from canonlog.domain.canonical import INT_MAX, INT_MIN, MAX_DEPTH, canonical_json
from canonlog.domain.errors import InvalidEvent
from canonlog.infrastructure.memory.pgtext import parse_jsonb

#: What json_problem returns for bytes that are not a JSON object jsonb accepts
#: (the append function's own message covers them).
NOT_AN_OBJECT: Final = "not an object"
NOT_CANONICAL: Final = "is not in canonical form (canonical JSON v1)"


def json_problem(raw: bytes) -> str | None:
    """Returns None for a canonical JSON v1 object, NOT_AN_OBJECT for bytes that are
    not a JSON object, or what keeps a JSON object from being canonical."""
    try:
        if canonical_json(raw) == raw:
            return None
    except InvalidEvent:
        pass
    try:
        value = parse_jsonb(raw, "payload")
    except InvalidEvent:
        return NOT_AN_OBJECT
    if type(value) is not dict:
        return NOT_AN_OBJECT
    if _deeper_than(value, MAX_DEPTH):
        return f"nests deeper than {MAX_DEPTH} levels"
    text = raw.decode("utf-8")
    tokens: list[str] = []
    pairs = json.loads(text, object_pairs_hook=list, parse_constant=str,
                       parse_int=lambda t: tokens.append(t), parse_float=lambda t: tokens.append(t))
    for token in tokens:
        problem = _range_problem(token)
        if problem is not None:
            return problem
    duplicate = _first_duplicate(pairs)
    if duplicate is not None:
        return f"has the key {json.dumps(duplicate, ensure_ascii=False)} twice in one object"
    return NOT_CANONICAL


def _deeper_than(value: Any, limit: int, depth: int = 0) -> bool:
    if depth > limit:
        return True
    if isinstance(value, dict):
        return any(_deeper_than(item, limit, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_deeper_than(item, limit, depth + 1) for item in value)
    return False


def _range_problem(token: str) -> str | None:
    if not any(c in token for c in ".eE"):
        if len(token) > 100:
            return (f"contains an integer of {len(token.lstrip('-'))} digits, "
                    "outside the signed 64-bit range")
        if not INT_MIN <= int(token) <= INT_MAX:
            return f"contains the integer {token}, outside the signed 64-bit range"
        return None
    if not math.isfinite(float(token)):
        return f"contains the number {token}, which is out of range for a double"
    return None


def _first_duplicate(value: Any) -> str | None:
    """The first key twice in one object: objects in document order, each before the
    objects inside it. Objects arrive as lists of (key, value) pairs."""
    if isinstance(value, list) and all(type(p) is tuple for p in value) and value:
        keys = [key for key, _ in value]
        counts: dict[str, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        for key in counts:  # in order of first occurrence
            if counts[key] > 1:
                return key
        children = [item for _, item in value]
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _first_duplicate(child)
        if found is not None:
            return found
    return None
