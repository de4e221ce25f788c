"""The database's quick canonical JSON check (quick_canonical_v2) never accepts a text
that the full check refuses, and accepts the usual payloads, so that they skip the
full check's statement per object and array; the append function's statement runs
it inlined, with no function call per event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.peers import order_payload
from canonlog.domain.canonical import canonical_json

JUDGE = (
    "SELECT coalesce(q.canonical, false), canonlog.json_text_problem_v1(s.t, s.t::jsonb) IS NULL"
    " FROM (SELECT b, convert_from(b, 'UTF8') AS t FROM (SELECT %s::bytea AS b) AS r) AS s"
    " CROSS JOIN LATERAL canonlog.quick_canonical_v2(s.b) AS q"
)

# Keys and strings built from the characters that trouble a text comparison: the
# separators jsonb writes (", " and ": "), quotes, backslashes, brackets, a control
# character, and characters of one, two and three UTF-8 bytes.
CHARACTERS = st.sampled_from(list('ab ,:"\\{[}]\x01/é€'))
TEXT = st.text(CHARACTERS, max_size=5)
# Short keys of different lengths, which jsonb orders by length first.
KEYS = st.sampled_from(["", "a", "b", "aa", "ab", "b,", "a b", "é", "€"]) | TEXT
SCALARS = (st.none() | st.booleans() | TEXT
           | st.integers(min_value=-(2**64), max_value=2**64)
           | st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)


def _jsonb_order(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def _code_point_order(key: str) -> bytes:
    return key.encode()


Order = Callable[[str], Any] | None


def render(value: Any, top: Order, nested: Order, items: str, keys: str,
           ascii_only: bool, twice: bool) -> str:
    """A JSON text of value: the top-level members ordered by `top`, the others by
    `nested` (None: as generated), the given separators, escapes for non-ASCII or
    not, and the first member of each object written twice when `twice`."""
    def go(v: Any, order: Order) -> str:
        if isinstance(v, dict):
            members = sorted(v.items(), key=lambda kv: order(kv[0])) if order else list(v.items())
            if twice and members:
                members.insert(0, members[0])
            return "{" + items.join(json.dumps(k, ensure_ascii=ascii_only) + keys + go(x, nested)
                                    for k, x in members) + "}"
        if isinstance(v, list):
            return "[" + items.join(go(x, nested) for x in v) + "]"
        return json.dumps(v, ensure_ascii=ascii_only)
    return go(value, top)


def _seldom(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 3)) == 0


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    """Texts of JSON objects: canonical, or departing from it in one way or a few
    (the nearer a text is to canonical, the harder it is to tell apart)."""
    value = draw(st.dictionaries(KEYS, VALUES, max_size=5))
    if _seldom(draw):
        try:
            return canonical_json(value)
        except Exception:  # out of range for canonical JSON v1: render it otherwise
            pass
    orders = st.sampled_from([_code_point_order, _jsonb_order, None])
    top = draw(orders) if _seldom(draw) else _code_point_order
    nested = draw(orders) if _seldom(draw) else _jsonb_order
    items, keys = (draw(st.sampled_from([(", ", ": "), (",", ": "), (", ", ":")]))
                   if _seldom(draw) else (",", ":"))
    return render(value, top, nested, items, keys, _seldom(draw), _seldom(draw)).encode()


@pytest.fixture
def sql(database):
    with psycopg.connect(database.admin.uri(), autocommit=True) as conn:
        yield conn


def judge(sql: psycopg.Connection, text: bytes) -> tuple[bool, bool]:
    row = sql.execute(JUDGE, (text,)).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


def test_the_quick_check_accepts_only_what_the_full_check_accepts(sql):
    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(texts())
    def check(text: bytes) -> None:
        quick, full = judge(sql, text)
        assert full or not quick, text

    check()


@pytest.mark.parametrize("value", [
    order_payload("s-1", 7),
    {},
    {"a": [], "b": {}, "c": [[{}]]},
    {"note": "leave it, please: by the door", "n": -12, "f": 1.5},
    {"outer": {"ab": {"cd": 1, "ef": [True, None]}, "gh": "x"}, "z": "\"q\\"},
    {"é": 1, "€": 2, "a": {"b\u0001": 3}},
])
def test_the_quick_check_accepts_canonical_payloads(sql, value):
    assert judge(sql, canonical_json(value)) == (True, True)


@pytest.mark.parametrize("value", [
    {"outer": {"b": 1, "aa": 2}},  # nested keys of two lengths: jsonb orders them otherwise
    {"n": 1e-05},  # jsonb writes the number 0.00001
    {"a": ["x, y"]},  # the space after a comma inside a nested string
])
def test_canonical_texts_the_quick_check_leaves_undecided_pass_the_full_check(sql, value):
    assert judge(sql, canonical_json(value)) == (False, True)


@pytest.mark.parametrize("text", [
    b'{"a":{"b":1,"aa":2}}',  # nested members in jsonb's order
    b'{"a":{"b":1,"b":2}}',
    b'{"a":[1,2], "b":3}',
    b'{"a":1.50}',
    b'{"a":-0}',
    rb'{"a":"\u00e9"}',
])
def test_the_quick_check_refuses_what_the_full_check_refuses(sql, text):
    assert judge(sql, text) == (False, False)



def test_the_quick_check_is_inlined_into_the_statement_that_calls_it(sql):
    """As the owner (append_v2 runs as the owner), the planner expands the check in
    place: the plan shows its parts and no call of the function itself."""
    sql.execute("SET ROLE canonlog_owner")
    plan = "\n".join(row[0] for row in sql.execute(
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FILTER (WHERE q.canonical)"
        " FROM unnest(ARRAY['{}'::bytea, '{\"a\":1}'::bytea]) AS e(payload)"
        " CROSS JOIN LATERAL canonlog.quick_canonical_v2(e.payload) AS q"))
    assert "quick_canonical_v2" not in plan, plan
    assert "jsonb_path_query" in plan, plan


def test_the_quick_check_leaves_what_is_not_an_object_undecided(sql):
    for raw in (None, b"[]", b"1", b'"{}"'):
        row = sql.execute("SELECT q.canonical FROM canonlog.quick_canonical_v2(%s::bytea) AS q",
                          (raw,)).fetchall()
        assert len(row) == 1 and row[0][0] is not True, raw
