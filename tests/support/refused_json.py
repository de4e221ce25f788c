"""JSON objects that canonical JSON v1 refuses, each with the words the append path
refuses it with, and objects at the edges of what it accepts."""

from __future__ import annotations

import pytest

_NESTED_65 = b'{"a":' + b"[" * 64 + b"1" + b"]" * 64 + b"}"
_NESTED_64 = b'{"a":' + b"[" * 64 + b"]" * 64 + b"}"

#: Not canonical JSON v1, and what the refusal says after "payload ".
REFUSED = [
    pytest.param(b'{"amount":1,"amount":1000000}', 'has the key "amount" twice in one object',
                 id="duplicate-key"),
    pytest.param(b'{"a":{"b":1,"b":1}}', 'has the key "b" twice in one object',
                 id="duplicate-nested-key"),
    pytest.param(b'{"a":1e400}', "contains the number 1e400, which is out of range for a double",
                 id="float-overflow"),
    pytest.param(b'{"a":-1.8e308}',
                 "contains the number -1.8e308, which is out of range for a double",
                 id="negative-float-overflow"),
    pytest.param(b'{"a":1180591620717411303424}',
                 "contains the integer 1180591620717411303424, outside the signed 64-bit range",
                 id="integer-2-pow-70"),
    pytest.param(b'{"a":9223372036854775808}',
                 "contains the integer 9223372036854775808, outside the signed 64-bit range",
                 id="integer-2-pow-63"),
    pytest.param(b'{"a":' + b"9" * 5000 + b"}",
                 "contains an integer of 5000 digits, outside the signed 64-bit range",
                 id="integer-5000-digits"),
    pytest.param(_NESTED_65, "nests deeper than 64 levels", id="too-deep"),
    pytest.param(b'{"a": 1}', "is not in canonical form (canonical JSON v1)", id="whitespace"),
    pytest.param(b'{"b":1,"a":2}', "is not in canonical form (canonical JSON v1)",
                 id="key-order"),
    pytest.param(b'{"a":[{"b":1,"a":2}]}', "is not in canonical form (canonical JSON v1)",
                 id="nested-key-order"),
    pytest.param(b'{"a":"\\u0041"}', "is not in canonical form (canonical JSON v1)",
                 id="needless-escape"),
    pytest.param(b'{"a":"\\u001F"}', "is not in canonical form (canonical JSON v1)",
                 id="uppercase-escape"),
    pytest.param(b'{"a":-0}', "is not in canonical form (canonical JSON v1)", id="minus-zero"),
    pytest.param(b'{"a":1.50}', "is not in canonical form (canonical JSON v1)",
                 id="trailing-zero"),
    pytest.param(b'{"a":0.10000000000000001}', "is not in canonical form (canonical JSON v1)",
                 id="float-not-shortest"),
    pytest.param(b'{"a":1E+16}', "is not in canonical form (canonical JSON v1)",
                 id="uppercase-exponent"),
    pytest.param(b'{"a":1e15}', "is not in canonical form (canonical JSON v1)",
                 id="exponent-where-positional"),
    pytest.param(b'{"a":1e-400}', "is not in canonical form (canonical JSON v1)",
                 id="float-underflow"),
    pytest.param(b'{"a":9.999999999999999e+22}', "is not in canonical form (canonical JSON v1)",
                 id="float-not-shortest-halfway"),
]

#: Canonical JSON v1 at the edges: floats in both forms, the extreme doubles and
#: integers, escapes, code point order beyond the BMP, 64 levels of nesting.
ACCEPTED = [
    b'{"a":1e+16,"b":5e-324,"c":-0.0,"d":1000000000000000.0,"e":1.7976931348623157e+308,'
    b'"f":2.5e-05,"g":0.0001,"h":100.0,"i":1e+23}',
    b'{"max":9223372036854775807,"min":-9223372036854775808}',
    b'{"a":"\\u001f\\n\\"\\\\","ab":1,"b":2}',
    '{"\uffff":1,"\U0001f600":2}'.encode(),
    _NESTED_64,
]
