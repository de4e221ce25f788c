"""Canonical JSON v1: one byte form per JSON object, and a named refusal for the rest.

The rules are those of docs/reference/hash-spec.md, section 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canonlog.domain.canonical import INT_MAX, INT_MIN, MAX_DEPTH, canonical_json
from canonlog.domain.errors import CanonlogError, InvalidEvent


def nested_arrays(levels: int, innermost: str = "") -> str:
    """An object whose member "a" holds `levels` nested arrays; the innermost holds `innermost`."""
    return '{"a":' + "[" * levels + innermost + "]" * levels + "}"


def nested_mapping(levels: int) -> dict[str, Any]:
    """An object with `levels` objects nested under it by the key "a"; the deepest is empty."""
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


# --- The output form -------------------------------------------------------------


def test_keys_are_sorted_by_code_point_at_every_level() -> None:
    """Members are ordered by code point, not by UTF-16 unit: U+FFFF before U+1F600."""
    value = {"b": 1, "a": {"z": 1, "A": 2, "é": 3}, "\U0001f600": 4, "\uffff": 5, "aa": 6, "B": 7}
    assert canonical_json(value) == (
        '{"B":7,"a":{"A":2,"z":1,"é":3},"aa":6,"b":1,"\uffff":5,"\U0001f600":4}'
    ).encode("utf-8")


def test_array_order_is_kept() -> None:
    """Arrays keep their order; tuples are arrays."""
    assert canonical_json({"a": [3, 1, 2], "b": (1, [2])}) == b'{"a":[3,1,2],"b":[1,[2]]}'


def test_no_insignificant_whitespace() -> None:
    """Whitespace between tokens disappears; whitespace inside strings stays."""
    text = ' \n{ "b" : [ 1 , 2 ] ,\t"a" : { } , "c" : " x  y " }\r\n'
    assert canonical_json(text) == b'{"a":{},"b":[1,2],"c":" x  y "}'


@pytest.mark.parametrize(
    ("char", "written"),
    [
        ('"', r"\""),
        ("\\", r"\\"),
        ("\b", r"\b"),
        ("\f", r"\f"),
        ("\n", r"\n"),
        ("\r", r"\r"),
        ("\t", r"\t"),
        ("\x01", r"\u0001"),
        ("\x1f", r"\u001f"),
        ("\x0b", r"\u000b"),
    ],
)
def test_the_minimal_escapes(char: str, written: str) -> None:
    """Quote, backslash and U+0001..U+001F are escaped: short forms, else lowercase \\u00xx."""
    assert canonical_json({"k": char}) == b'{"k":"' + written.encode("ascii") + b'"}'
    assert canonical_json({char: 0}) == b'{"' + written.encode("ascii") + b'":0}'


@pytest.mark.parametrize("char", ["/", "\x7f", "\u2028", "\u2029", "é", "漢", "\U0001f600", "\ufeff"])
def test_everything_else_is_literal_utf8(char: str) -> None:
    """Solidus, DEL, line separators and non-ASCII characters are written as they are."""
    assert canonical_json({"k": char}) == b'{"k":"' + char.encode("utf-8") + b'"}'


def test_escaped_input_is_written_unescaped() -> None:
    """Escapes in the input are decoded, so \\u00e9 and é give the same bytes."""
    assert canonical_json(r'{"k":"\u00e9\/\ud83d\ude00"}') == '{"k":"é/😀"}'.encode()


def test_no_unicode_normalisation() -> None:
    """A decomposed é and a precomposed é stay distinct, as keys and as values."""
    decomposed, precomposed = "e\u0301", "\u00e9"
    out = canonical_json({decomposed: decomposed, precomposed: precomposed})
    assert out == '{"e\u0301":"e\u0301","\u00e9":"\u00e9"}'.encode()


def test_literals_are_lowercase_words() -> None:
    assert canonical_json('{"t":true,"f":false,"n":null}') == b'{"f":false,"n":null,"t":true}'
    assert canonical_json({"t": True, "f": False, "n": None}) == b'{"f":false,"n":null,"t":true}'


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("0", "0"),
        ("-0", "0"),
        ("10", "10"),
        ("-42", "-42"),
        (str(INT_MAX), str(INT_MAX)),
        (str(INT_MIN), str(INT_MIN)),
    ],
)
def test_integers_are_plain_decimal(text: str, written: str) -> None:
    """An integer token stays an integer, in plain decimal; -0 is 0."""
    assert canonical_json('{"n":' + text + "}") == ('{"n":' + written + "}").encode()


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("1.0", "1.0"),
        ("1e0", "1.0"),
        ("1E2", "100.0"),
        ("0.1", "0.1"),
        ("19.99", "19.99"),
        ("-0.0", "-0.0"),
        ("0.10000000000000000555", "0.1"),
        ("1e15", "1000000000000000.0"),
        ("1e16", "1e+16"),
        ("123456789012345678.0", "1.2345678901234568e+17"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("2.5e-5", "2.5e-05"),
        ("-1.5e300", "-1.5e+300"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("1e-400", "0.0"),
    ],
)
def test_floats_are_written_shortest_round_trip(text: str, written: str) -> None:
    """A number with a fraction or exponent is a double, written in its shortest form."""
    assert canonical_json('{"x":' + text + "}") == ('{"x":' + written + "}").encode()
    assert canonical_json({"x": float(text)}) == ('{"x":' + written + "}").encode()


def test_an_integer_and_an_equal_float_differ() -> None:
    """1 and 1.0 are different canonical forms: the kind of number is kept."""
    assert canonical_json({"n": 1}) == b'{"n":1}'
    assert canonical_json({"n": 1.0}) == b'{"n":1.0}'


@pytest.mark.parametrize(
    "raw",
    [
        '{"b":1,"a":"é"}',
        b'{"b":1,"a":"\xc3\xa9"}',
        bytearray(b'{"b":1,"a":"\xc3\xa9"}'),
        memoryview(b'{"b":1,"a":"\xc3\xa9"}'),
        {"b": 1, "a": "é"},
    ],
    ids=["str", "bytes", "bytearray", "memoryview", "mapping"],
)
def test_every_input_kind_gives_the_same_bytes(raw: Any) -> None:
    assert canonical_json(raw) == '{"a":"é","b":1}'.encode()


def test_depth_up_to_max_depth_is_accepted() -> None:
    """A value at depth MAX_DEPTH (the top object being depth 0) is accepted."""
    assert canonical_json(nested_arrays(MAX_DEPTH)) == nested_arrays(MAX_DEPTH).encode()
    assert canonical_json(nested_arrays(MAX_DEPTH - 1, "1")) == nested_arrays(
        MAX_DEPTH - 1, "1"
    ).encode()
    assert canonical_json(nested_mapping(MAX_DEPTH)).count(b"{") == MAX_DEPTH + 1


def test_a_size_limit_counts_canonical_bytes() -> None:
    """max_bytes bounds the canonical form, inclusive; input whitespace does not count."""
    assert canonical_json('{ "a" :   1 }', max_bytes=7) == b'{"a":1}'


# --- Refusals: each an InvalidEvent that names the problem --------------------------


def refusal(raw: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as caught:
        canonical_json(raw, **kwargs)
    assert isinstance(caught.value, CanonlogError)
    return str(caught.value)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("[1, 2]", "an array"),
        ('"text"', "a string"),
        ("42", "a number"),
        ("4.2", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ],
)
def test_refuses_json_text_that_is_not_an_object(raw: str, kind: str) -> None:
    assert refusal(raw) == f"payload must be a JSON object, got {kind}"


@pytest.mark.parametrize(
    ("raw", "kind"), [([1, 2], "list"), (42, "int"), (None, "NoneType"), (1.5, "float")]
)
def test_refuses_in_memory_values_that_are_not_an_object(raw: Any, kind: str) -> None:
    assert refusal(raw) == f"payload must be a JSON object, got {kind}"


@pytest.mark.parametrize(
    "raw",
    [b'{"a":"\xff"}', b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}', b'{"\xc0\xaf":1}'],
    ids=["invalid-byte", "truncated", "encoded-surrogate", "overlong"],
)
def test_refuses_invalid_utf8(raw: bytes) -> None:
    assert "payload is not valid UTF-8 (byte " in refusal(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"a":1,}',
        '{"a":1} {}',
        '{"a":01}',
        "{'a':1}",
        '{"a":1 /* comment */}',
        '{"a":"tab\there"}',
        '\ufeff{"a":1}',
        b'\xef\xbb\xbf{"a":1}',
        "",
    ],
    ids=["trailing-comma", "trailing-data", "leading-zero", "single-quotes", "comment",
         "raw-control-character", "bom-text", "bom-bytes", "empty"],
)
def test_refuses_text_that_is_not_json(raw: str | bytes) -> None:
    assert refusal(raw).startswith("payload is not valid JSON: ")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"a":}', "Expecting value: line 1 column 6 (char 5)"),
        ('{"a":"tab\there"}', "Invalid control character at: line 1 column 10 (char 9)"),
        ('{"a":"open}', "Unterminated string starting at: line 1 column 6 (char 5)"),
        ('{"a":1}\n{}', "Extra data: line 2 column 1 (char 8)"),
    ],
)
def test_a_json_syntax_error_names_the_position_once(raw: str, message: str) -> None:
    """The parser's message is followed by line, column and character offset."""
    assert refusal(raw) == f"payload is not valid JSON: {message}"


def test_refuses_duplicate_keys() -> None:
    assert refusal('{"a":1,"b":2,"a":3}') == "payload has the key 'a' twice in one object"


def test_refuses_duplicate_keys_in_a_nested_object() -> None:
    message = refusal('{"a":1,"n":[{"x":{"k":1,"k":1}}]}')
    assert message == "payload has the key 'k' twice in one object"


def test_refuses_duplicate_keys_compared_after_unescaping() -> None:
    assert "the key 'a' twice" in refusal(r'{"a":1,"\u0061":2}')


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (r'{"a":"x\u0000y"}', "payload.a"),
        ({"a": "x\x00y"}, "payload.a"),
        ({"a": [{"b": "\x00"}]}, "payload.a[0].b"),
    ],
)
def test_refuses_nul_in_a_value(raw: Any, where: str) -> None:
    assert refusal(raw) == f"{where} contains U+0000, which PostgreSQL cannot store"


@pytest.mark.parametrize("raw", [r'{"k\u0000":1}', {"k\x00": 1}])
def test_refuses_nul_in_a_key(raw: Any) -> None:
    assert refusal(raw) == "payload key 'k\\x00' contains U+0000, which PostgreSQL cannot store"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (r'{"a":"\ud800"}', "payload.a contains a lone surrogate at character 0"),
        (r'{"a":"x\udc00"}', "payload.a contains a lone surrogate at character 1"),
        (r'{"a":"\ude00\ud83d"}', "payload.a contains a lone surrogate at character 0"),
        ({"a": "\ud800"}, "payload.a contains a lone surrogate at character 0"),
        ({"\udfff": 1}, "payload key '\\udfff' contains a lone surrogate at character 0"),
    ],
)
def test_refuses_lone_surrogates(raw: Any, message: str) -> None:
    assert refusal(raw) == message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_refuses_non_finite_constants_in_text(constant: str) -> None:
    message = refusal('{"a":' + constant + "}")
    assert message == f"payload contains {constant}, which is not a JSON number"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_refuses_non_finite_floats_in_memory(value: float) -> None:
    assert refusal({"a": [value]}) == f"payload.a[0] is {value}, which is not a finite number"


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5E+999", "9" * 400 + ".0"])
def test_refuses_floats_that_overflow_a_double(number: str) -> None:
    message = refusal('{"a":' + number + "}")
    assert message == f"payload contains the number {number}, which is out of range for a double"


@pytest.mark.parametrize("value", [INT_MAX + 1, INT_MIN - 1, 10**30, -(10**30)])
def test_refuses_integers_beyond_signed_64_bits(value: int) -> None:
    expected = f"payload.a is the integer {value}, outside the signed 64-bit range"
    assert refusal('{"a":' + str(value) + "}") == expected
    assert refusal({"a": value}) == expected


def test_refuses_nesting_deeper_than_max_depth_in_text() -> None:
    message = refusal(nested_arrays(MAX_DEPTH + 1))
    assert message.startswith("payload.a[0]")
    assert message.endswith(f" nests deeper than {MAX_DEPTH} levels")
    assert refusal(nested_arrays(MAX_DEPTH, "1")).endswith(f"nests deeper than {MAX_DEPTH} levels")


def test_refuses_nesting_deeper_than_max_depth_in_memory() -> None:
    assert refusal(nested_mapping(MAX_DEPTH + 1)).endswith(f"nests deeper than {MAX_DEPTH} levels")


def test_refuses_nesting_deeper_than_the_parser_can_follow() -> None:
    """Text nested far beyond MAX_DEPTH is refused the same way, not with RecursionError."""
    assert refusal(nested_arrays(100_000)).endswith(f"nests deeper than {MAX_DEPTH} levels")


def test_refuses_a_cycle_as_too_deep() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    assert refusal(cyclic).endswith(f"nests deeper than {MAX_DEPTH} levels")


def test_refuses_more_than_max_bytes() -> None:
    assert refusal({"a": 1}, max_bytes=6) == (
        "payload is 7 bytes in canonical form; the limit is 6"
    )


def test_messages_name_what_is_checked() -> None:
    """The `what` argument names the field in every message."""
    assert refusal("[]", what="metadata") == "metadata must be a JSON object, got an array"
    assert refusal({"a": 1}, what="metadata", max_bytes=2).startswith("metadata is 7 bytes")
    assert refusal({"a": 2**64}, what="metadata").startswith("metadata.a is the integer")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({1: "a"}, "payload has a key of type int; keys must be strings"),
        ({"a": {None: 1}}, "payload.a has a key of type NoneType; keys must be strings"),
        ({"a": b"x"}, "payload.a is a bytes, which is not a JSON value"),
        ({"a": {1, 2}}, "payload.a is a set, which is not a JSON value"),
        ({"a": object()}, "payload.a is a object, which is not a JSON value"),
    ],
)
def test_refuses_in_memory_values_that_are_not_json(raw: Any, message: str) -> None:
    assert refusal(raw) == message


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_with_thousands_of_digits_is_refused_as_out_of_range(sign: str) -> None:
    """Past Python's int digit limit too, the refusal is an InvalidEvent, not a ValueError."""
    message = refusal('{"a":' + sign + "1" * 5000 + "}")
    assert message == "payload contains an integer of 5000 digits, outside the signed 64-bit range"


def test_a_mapping_that_is_not_a_dict_is_accepted() -> None:
    payload: Mapping[str, Any] = {"b": MappingProxyType({"x": 1}), "a": 2}
    assert canonical_json(MappingProxyType(payload)) == b'{"a":2,"b":{"x":1}}'


# --- Properties ---------------------------------------------------------------------

json_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5),
    max_leaves=30,
)
json_objects = st.dictionaries(json_text, json_values, max_size=8)


@settings(deadline=None)
@given(json_objects)
def test_canonical_json_is_idempotent(value: dict[str, Any]) -> None:
    """Canonicalising canonical bytes gives the same bytes."""
    once = canonical_json(value)
    assert canonical_json(once) == once


@settings(deadline=None)
@given(json_objects)
def test_a_mapping_and_its_json_text_give_the_same_bytes(value: dict[str, Any]) -> None:
    """The mapping and any JSON text of it (compact, escaped, indented) canonicalise alike."""
    expected = canonical_json(value)
    assert canonical_json(json.dumps(value)) == expected
    assert canonical_json(json.dumps(value, ensure_ascii=False).encode("utf-8")) == expected
    assert canonical_json(json.dumps(value, indent=2, sort_keys=True)) == expected


@settings(deadline=None)
@given(json_objects)
def test_canonical_bytes_parse_back_to_the_same_object(value: dict[str, Any]) -> None:
    """Canonicalisation loses nothing: the bytes are RFC 8259 JSON for the same object."""
    assert json.loads(canonical_json(value)) == value
