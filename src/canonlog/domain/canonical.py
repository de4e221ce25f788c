"""Canonical JSON: the one byte form of a payload that canonlog stores and hashes.

A payload is a JSON object. Its canonical form (version 1) is UTF-8 JSON with
object keys sorted by code point, no insignificant whitespace, the minimal
string escapes of RFC 8259 (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, and
``\\u00`` with two lowercase hex digits, such as ``\\u001f``, for the other control
characters; everything else literal), integers in plain decimal and finite floats
in their shortest round-trip form. Two payloads that mean the same JSON object
have the same canonical bytes, which is what idempotent retries compare. The full
rules are in docs/reference/hash-spec.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from canonlog.domain.errors import InvalidEvent

#: Integers must fit a signed 64-bit value, the range every JSON consumer can hold exactly
#: in at least one native type.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
MAX_DEPTH: Final = 64
#: Integer tokens longer than this are refused unread: int() of thousands of digits is
#: slow and, past sys.get_int_max_str_digits(), a ValueError. Shorter ones are read so
#: that the refusal names the value and where it is.
_MAX_INT_CHARS: Final = 100

JsonObject = Mapping[str, Any]
RawJson = JsonObject | bytes | bytearray | memoryview | str


def canonical_json(value: RawJson, *, what: str = "payload", max_bytes: int | None = None) -> bytes:
    """Returns the canonical bytes of a JSON object given as a mapping or as JSON text.

    Raises InvalidEvent naming the problem and where it is: not an object, invalid
    UTF-8, duplicate keys, U+0000 or lone surrogates in strings, non-finite or
    out-of-range numbers, nesting deeper than MAX_DEPTH, or more than max_bytes.
    """
    if type(value) is dict:
        parsed: Any = value
    elif isinstance(value, (bytes, bytearray, memoryview, str)):
        parsed = parse_json(value, what)
    elif isinstance(value, Mapping):
        parsed = value
    else:
        raise InvalidEvent(f"{what} must be a JSON object, got {type(value).__name__}")
    if type(parsed) is not dict and not isinstance(parsed, Mapping):
        raise InvalidEvent(f"{what} must be a JSON object, got {_json_kind(parsed)}")
    if not _plainly_valid(parsed, 0):
        # The slow walk names what is wrong, or accepts what the quick one cannot
        # judge (Mapping and tuple types, int and str subclasses).
        _check(parsed, what, 0)
    encoded = _ENCODER.encode(parsed).encode("utf-8")
    if max_bytes is not None and len(encoded) > max_bytes:
        raise InvalidEvent(f"{what} is {len(encoded)} bytes in canonical form; the limit is {max_bytes}")
    return encoded


def _as_dict(value: object) -> dict[str, Any]:
    """json serialises only dict; _check has let through other Mappings too."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# One encoder for every call: json.dumps with these options builds a new one each
# time. No circular check, since a value has passed the depth limit before it is
# encoded.
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    check_circular=False, default=_as_dict,
)


def parse_json(raw: bytes | bytearray | memoryview | str, what: str) -> Any:
    """Parses JSON text as canonical JSON v1 reads it; raises InvalidEvent naming what.

    Refused, unlike json.loads: a key twice in one object (json.loads keeps the
    last), NaN and Infinity, numbers out of a double's range and integers of more
    than 100 digits. Every path that parses JSON a user gave uses it.
    """
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"{what} is not valid UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(
            text,
            object_pairs_hook=lambda pairs: _unique_keys(pairs, what),
            parse_constant=lambda name: _reject_constant(name, what),
            parse_float=lambda digits: _parse_float(digits, what),
            parse_int=lambda digits: _parse_int(digits, what),
        )
    except json.JSONDecodeError as exc:
        # str(exc) reads "Expecting value: line 1 column 6 (char 5)".
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"{what} nests deeper than {MAX_DEPTH} levels") from exc


def _unique_keys(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise InvalidEvent(f"{what} has the key {key!r} twice in one object")
        result[key] = item
    return result


def _reject_constant(name: str, what: str) -> Any:
    raise InvalidEvent(f"{what} contains {name}, which is not a JSON number")


def _parse_float(digits: str, what: str) -> float:
    number = float(digits)
    if not math.isfinite(number):
        raise InvalidEvent(f"{what} contains the number {digits}, which is out of range for a double")
    return number


def _parse_int(digits: str, what: str) -> int:
    if len(digits) > _MAX_INT_CHARS:
        raise InvalidEvent(
            f"{what} contains an integer of {len(digits.lstrip('-'))} digits, "
            "outside the signed 64-bit range"
        )
    return int(digits)


def _plainly_valid(value: Any, depth: int) -> bool:
    """True when value is made of plain dicts, lists, str, int, float, bool and None and
    breaks no rule; False when it breaks one or is something else (then _check decides).
    It builds no error paths, so the common case costs a fraction of _check."""
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not (key.isascii() or _encodable(key)):
                return False
            # Strings, integers, booleans and null inline: a call per value would be
            # most of the walk's cost.
            kind = type(item)
            if kind is str:
                if "\x00" in item or not (item.isascii() or _encodable(item)):
                    return False
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    return False
            elif item is not None and kind is not bool and not _plainly_valid(item, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        for item in value:
            kind = type(item)
            if kind is str:
                if "\x00" in item or not (item.isascii() or _encodable(item)):
                    return False
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    return False
            elif item is not None and kind is not bool and not _plainly_valid(item, depth + 1):
                return False
        return True
    if kind is str:
        return "\x00" not in value and (value.isascii() or _encodable(value))
    if kind is int:
        return bool(INT_MIN <= value <= INT_MAX)
    if kind is float:
        return math.isfinite(value)
    return value is None or kind is bool


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{path} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_string(value, path)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidEvent(f"{path} is the integer {value}, outside the signed 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(f"{path} is {value}, which is not a finite number")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEvent(f"{path} has a key of type {type(key).__name__}; keys must be strings")
            _check_string(key, f"{path} key {key!r}")
            _check(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    else:
        raise InvalidEvent(f"{path} is a {type(value).__name__}, which is not a JSON value")


def _check_string(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidEvent(f"{path} contains U+0000, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(f"{path} contains a lone surrogate at character {exc.start}") from exc


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
