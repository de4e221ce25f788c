"""PostgreSQL's text and jsonb, as far as the in-memory store needs them.

The store refuses what the server would refuse (text it cannot hold, JSON jsonb
does not accept) and renders its own events' payloads as canonlog.canonical_json_v1
renders jsonb, so both produce the same bytes and the same hashes.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from canonlog.domain.errors import InvalidEvent


def storable(*texts: str | None) -> None:
    """Refuses text PostgreSQL cannot hold in a text column, as the server does."""
    for text in texts:
        if text is not None and not is_pg_text(text):
            raise InvalidEvent(f"the database refused the input: {text!r} is not storable text")


def is_pg_text(text: str) -> bool:
    """PostgreSQL text is UTF-8 without NUL: no U+0000 and no unpaired surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


# -- PostgreSQL's jsonb, as far as payload checks and system payloads need it --------


def parse_jsonb(raw: bytes | str, what: str) -> Any:
    """Parses JSON as a cast to jsonb does; raises InvalidEvent for what jsonb refuses.

    Differences from json.loads that matter: NaN and Infinity are not JSON, numbers
    are exact decimals of any length (Decimal, integers too), and U+0000 or unpaired
    surrogates in strings are refused.
    Duplicate keys are allowed; the last one wins, as in jsonb.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        value = json.loads(text, parse_float=Decimal, parse_int=Decimal,
                           parse_constant=_not_json)
        _check_strings(value)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidEvent(f"the database refused the input: {what} is not valid jsonb") from exc
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        if not is_pg_text(value):
            raise ValueError("U+0000 or an unpaired surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def canonical_jsonb(value: Any) -> str:
    """Renders a value parse_jsonb returned as canonlog.canonical_json_v1 renders jsonb.

    That is canonical JSON v1 (canonlog.domain.canonical) for objects, arrays,
    strings, integers, booleans and null: keys in code point order, no whitespace,
    the escapes of to_json, which are json.dumps's with ensure_ascii off. Other
    numbers keep PostgreSQL numeric's rendering (no exponent, scale kept, no
    negative zero), not canonical JSON's float form. No system payload holds such a
    number; payload checks parse them (parse_jsonb), and the tests hold this rendering
    to the server's.
    """
    if isinstance(value, dict):
        members = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{canonical_jsonb(v)}"
                              for k, v in members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_jsonb(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(abs(value) if value.is_zero() else value, "f")
    return json.dumps(value, ensure_ascii=False)
