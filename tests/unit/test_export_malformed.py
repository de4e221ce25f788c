"""Malformed exports: every bad line gets one line naming the line and the field, exit 1,
never a traceback. Hypothesis mutates a genuine export and runs `canonlog verify --export`
in process on it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canonlog.domain.errors import ExportFormatError
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.cli import main
from canonlog.infrastructure.export import _checked_event, event_to_json, exported_event
from canonlog.infrastructure.memory import MemoryEventLog


async def _genuine() -> list[dict[str, Any]]:
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "w")
    for i in range(4):
        await log.append_batch(grant, [AppendRequest.create(
            f"s-{i % 2}", [NewEvent.create("e", {"i": i})])])
    return [json.loads(event_to_json(e)) for e in await log.read_all("main")]


GENUINE = asyncio.run(_genuine())
FIELDS = sorted(GENUINE[0])


def run_verify(lines: list[str]) -> tuple[int, str, str]:
    """Runs `canonlog verify --export` in process; returns its code, stdout and stderr."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "export.jsonl"
        path.write_text("".join(line + "\n" for line in lines), "utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["verify", "--export", str(path), "--no-checkpoints"])
    return code, out.getvalue(), err.getvalue()


def mutated(line: int, field: str, value: Any) -> list[str]:
    lines = [json.dumps(event) for event in GENUINE]
    lines[line] = json.dumps({**GENUINE[line], field: value})
    return lines


def test_the_genuine_export_verifies():
    assert run_verify([json.dumps(e) for e in GENUINE])[0] == 0


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("sequence", "3", "field 'sequence' is a string, expected an integer"),
    ("sequence", 3.0, "field 'sequence' is a number that is not a 64-bit integer, expected an "
                      "integer"),
    ("sequence", 2**70, "field 'sequence' is a number that is not a 64-bit integer, expected an "
                        "integer"),
    ("sequence", -1, "field 'sequence' is -1, out of range (0..9223372036854775807)"),
    ("epoch", True, "field 'epoch' is a boolean, expected an integer"),
    ("ledger_id", None, "field 'ledger_id' is null, expected a string"),
    ("hash_version", None, "field 'hash_version' is null, expected an integer"),
    ("stream_id", 7, "field 'stream_id' is an integer, expected a string"),
    ("recorded_at", "2026-01-01T00:00:00", "field 'recorded_at' is a time without a UTC offset"),
    ("writer_time", "yesterday", "field 'writer_time' is not valid: Invalid isoformat string: "
                                 "'yesterday'"),
    ("hash", "00" * 31, "field 'hash' is not 32 bytes as 64 hex digits"),
    ("prev_hash", " " * 64, "field 'prev_hash' is not 32 bytes as 64 hex digits"),
    ("event_id", "not-a-uuid", "field 'event_id' is not valid: badly formed hexadecimal UUID "
                               "string"),
    ("payload", {"i": 1}, "field 'payload' is an object, expected a string"),
    ("format", None, "unknown export format None"),
])
def test_a_malformed_field_is_named_with_its_line(field, value, problem):
    code, _, err = run_verify(mutated(2, field, value))
    assert (code, err.splitlines()[-1]) == (1, f"canonlog: line 3: {problem}")


def test_a_missing_field_a_truncated_line_and_a_non_object_are_named():
    lines = [json.dumps(e) for e in GENUINE]
    without = {k: v for k, v in GENUINE[1].items() if k != "signature"}
    assert run_verify([lines[0], json.dumps(without)])[2].splitlines()[-1] == (
        "canonlog: line 2: field 'signature' is missing")
    code, _, err = run_verify([lines[0], lines[1][:40]])
    assert code == 1 and err.splitlines()[-1].startswith("canonlog: line 2: not JSON: ")
    assert run_verify([lines[0], "[1, 2]"])[2].splitlines()[-1] == (
        "canonlog: line 2: an array where a JSON object was expected")


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=70),
    st.sampled_from(["2026-01-01T00:00:00", "2026-01-01T00:00:00+00:00", "00" * 32, "ff" * 64]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.none(), max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.integers(0, len(GENUINE) - 1), field=st.sampled_from(FIELDS), value=VALUES,
       cut=st.one_of(st.none(), st.integers(0, 400)), drop=st.booleans())
def test_mutated_exports_never_end_in_a_traceback(line, field, value, cut, drop):
    lines = mutated(line, field, value)
    if drop:
        del lines[line]
    elif cut is not None:
        lines[line] = lines[line][:cut]
    code, _, err = run_verify(lines)  # an exception here is the traceback an operator would see
    assert code in (0, 1)
    errors = [message for message in err.splitlines() if message.startswith("canonlog: ")]
    # Either the chain was judged (breaks on stdout) or one line names the line at fault.
    assert errors == [] or (len(errors) == 1 and errors[0].startswith("canonlog: line ")), err


def _outcome(parse: Any, line: str) -> Any:
    try:
        return parse(line, 7)
    except ExportFormatError:
        return "refused"


@settings(max_examples=500, deadline=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_the_fast_path_accepts_exactly_what_the_field_by_field_check_accepts(field, value):
    line = mutated(1, field, value)[1]
    assert _outcome(exported_event, line) == _outcome(_checked_event, line)
