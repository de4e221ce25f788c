"""What callers submit is validated before anything reaches a database: each refusal is
an InvalidEvent that names the field and the problem."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from canonlog.domain.canonical import INT_MAX
from canonlog.domain.errors import InvalidEvent
from canonlog.domain.events import (
    WRITER_TIME_MAX,
    WRITER_TIME_MIN,
    AppendRequest,
    Limits,
    NewEvent,
    StreamState,
    WriteContext,
    expected_version_code,
)


def refused(call: Callable[[], object]) -> str:
    """The message of the InvalidEvent that call raises."""
    with pytest.raises(InvalidEvent) as caught:
        call()
    return str(caught.value)


def event(payload: dict[str, Any] | None = None) -> NewEvent:
    return NewEvent.create("thing_happened", {"n": 1} if payload is None else payload)


# --- expected_version_code ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "code"),
    [(StreamState.ANY, None), (StreamState.STREAM_EXISTS, -1), (StreamState.NO_STREAM, 0),
     (1, 1), (INT_MAX, INT_MAX)],
)
def test_expected_versions_encode_as_the_append_function_takes_them(
    expected: Any, code: int | None
) -> None:
    assert expected_version_code(expected) == code


@pytest.mark.parametrize(
    "expected", [0, -1, INT_MAX + 1, True, False, 1.0, "1", None, "any"],
    ids=["zero", "negative", "above-int64", "true", "false", "float", "str", "none", "name"],
)
def test_an_expected_version_that_is_not_a_state_or_a_version_is_refused(expected: Any) -> None:
    """A version is an int from 1 to 2**63-1; bool is not an int here, nor 0 (NO_STREAM is)."""
    with pytest.raises(InvalidEvent, match="expected_version must be a StreamState or a version"):
        expected_version_code(expected)


# --- NewEvent.create ----------------------------------------------------------------


def test_a_new_event_holds_canonical_bytes() -> None:
    created = NewEvent.create("t", '{"b": 1, "a": [true]}', {"z": None})
    assert created.payload == b'{"a":[true],"b":1}'
    assert created.metadata == b'{"z":null}'
    assert created.event_id is None


def test_metadata_defaults_to_the_empty_object() -> None:
    assert NewEvent.create("t", {}).metadata == b"{}"


def test_a_supplied_event_id_is_kept() -> None:
    supplied = uuid.uuid4()
    assert NewEvent.create("t", {}, event_id=supplied).event_id == supplied


def test_an_event_id_that_is_not_a_uuid_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="event_id must be a UUID, got str"):
        NewEvent.create("t", {}, event_id=str(uuid.uuid4()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event_type", "message"),
    [
        ("", "event_type must not be empty"),
        ("x" * 257, "event_type is 257 characters; the limit is 256"),
        ("tab\there", "event_type 'tab\\there' contains control or unprintable characters"),
        ("nul\x00", "event_type 'nul\\x00' contains control or unprintable characters"),
        ("del\x7f", "event_type 'del\\x7f' contains control or unprintable characters"),
        ("lone\ud800", "event_type contains a lone surrogate"),
        (42, "event_type must be a string, got int"),
        (None, "event_type must be a string, got NoneType"),
    ],
    ids=["empty", "overlong", "tab", "nul", "del", "lone-surrogate", "int", "none"],
)
def test_an_unusable_event_type_is_refused(event_type: Any, message: str) -> None:
    assert refused(lambda: NewEvent.create(event_type, {})) == message


def test_an_event_type_of_the_length_limit_is_accepted() -> None:
    assert NewEvent.create("é" * 256, {}).event_type == "é" * 256


def test_payload_and_metadata_are_held_to_their_own_size_limits() -> None:
    limits = Limits(max_payload_bytes=7, max_metadata_bytes=2)
    assert NewEvent.create("t", {"a": 1}, {}, limits=limits).payload == b'{"a":1}'
    message = refused(lambda: NewEvent.create("t", {"a": 10}, limits=limits))
    assert message == "payload is 8 bytes in canonical form; the limit is 7"
    message = refused(lambda: NewEvent.create("t", {}, {"a": 1}, limits=limits))
    assert message == "metadata is 7 bytes in canonical form; the limit is 2"


def test_a_payload_that_is_not_canonicalisable_is_refused() -> None:
    message = refused(lambda: NewEvent.create("t", {}, "[]"))
    assert message == "metadata must be a JSON object, got an array"


# --- AppendRequest.create -----------------------------------------------------------


def test_a_valid_request_keeps_its_events_in_order() -> None:
    first, second = event({"i": 1}), event({"i": 2})
    request = AppendRequest.create("orders-1", [first, second], expected_version=3)
    assert request.events == (first, second)
    assert request.expected_version == 3
    assert request.context == WriteContext()


@pytest.mark.parametrize(
    ("stream_id", "message"),
    [
        ("", "stream_id must not be empty"),
        ("s" * 257, "stream_id is 257 characters; the limit is 256"),
        ("line\nbreak", "stream_id 'line\\nbreak' contains control or unprintable characters"),
        ("\x1b[31m", "stream_id '\\x1b[31m' contains control or unprintable characters"),
        ("\udc00", "stream_id contains a lone surrogate"),
        (b"bytes", "stream_id must be a string, got bytes"),
    ],
    ids=["empty", "overlong", "newline", "escape", "lone-surrogate", "bytes"],
)
def test_an_unusable_stream_id_is_refused(stream_id: Any, message: str) -> None:
    assert refused(lambda: AppendRequest.create(stream_id, [event()])) == message


@pytest.mark.parametrize("stream_id", ["$ledger", "$", "$anything"])
def test_the_dollar_prefix_is_reserved_for_the_ledger(stream_id: str) -> None:
    with pytest.raises(InvalidEvent, match="reserved for the ledger's own events"):
        AppendRequest.create(stream_id, [event()])


def test_a_dollar_sign_later_in_a_stream_id_is_fine() -> None:
    assert AppendRequest.create("price$usd", [event()]).stream_id == "price$usd"


@pytest.mark.parametrize("events", [[], ()], ids=["list", "tuple"])
def test_an_append_without_events_is_refused(events: Any) -> None:
    message = refused(lambda: AppendRequest.create("s", events))
    assert message == "an append needs at least one event"


def test_an_append_of_more_events_than_the_limit_is_refused() -> None:
    limits = Limits(max_events_per_append=2)
    assert len(AppendRequest.create("s", [event()] * 2, limits=limits).events) == 2
    message = refused(lambda: AppendRequest.create("s", [event()] * 3, limits=limits))
    assert message == "an append holds 3 events; the limit is 2"


@pytest.mark.parametrize(
    ("item", "kind"), [({"n": 1}, "dict"), (b'{"n":1}', "bytes"), (None, "NoneType")]
)
def test_an_item_that_is_not_a_new_event_is_refused(item: Any, kind: str) -> None:
    message = refused(lambda: AppendRequest.create("s", [event(), item]))
    assert message == f"events must be NewEvent instances, got {kind}"


@pytest.mark.parametrize("expected", [0, INT_MAX + 1, True])
def test_a_request_with_an_invalid_expected_version_is_refused(expected: Any) -> None:
    with pytest.raises(InvalidEvent, match="expected_version"):
        AppendRequest.create("s", [event()], expected_version=expected)


def test_the_context_is_checked_when_the_request_is_created() -> None:
    message = refused(lambda: AppendRequest.create("s", [event()], context=WriteContext(agent_id="")))
    assert message == "agent_id must not be empty"


# --- WriteContext.checked -----------------------------------------------------------


def test_a_full_context_passes() -> None:
    context = WriteContext(task_id="t", execution_id="e", correlation_id="c", causation_id="k",
                           agent_id="a", writer_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert context.checked() is context


@pytest.mark.parametrize(
    "field", ["task_id", "execution_id", "correlation_id", "causation_id", "agent_id"]
)
@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "must not be empty"), ("i" * 257, "is 257 characters; the limit is 256"),
     ("a\tb", "contains control or unprintable characters"),
     ("\ud800", "contains a lone surrogate"), (7, "must be a string, got int")],
    ids=["empty", "overlong", "control", "lone-surrogate", "int"],
)
def test_every_id_of_the_context_is_a_checked_name(field: str, value: Any, problem: str) -> None:
    message = refused(lambda: WriteContext(**{field: value}).checked())
    assert message.startswith(field) and message.endswith(problem)


def test_the_name_length_limit_applies_to_context_ids() -> None:
    message = refused(lambda: WriteContext(task_id="abcde").checked(Limits(max_name_length=4)))
    assert message == "task_id is 5 characters; the limit is 4"


@pytest.mark.parametrize(
    "writer_time", [datetime(2026, 1, 1), "2026-01-01T00:00:00Z", 1767225600],
    ids=["naive", "str", "int"],
)
def test_writer_time_must_be_an_aware_datetime(writer_time: Any) -> None:
    message = refused(lambda: WriteContext(writer_time=writer_time).checked())
    assert message == "writer_time must be a timezone-aware datetime"


@pytest.mark.parametrize(
    "writer_time",
    [
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        WRITER_TIME_MAX + timedelta(microseconds=1),
        WRITER_TIME_MIN - timedelta(microseconds=1),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=14))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=-14))),
        # Within the range as written, outside it as an instant.
        datetime(9999, 12, 29, 23, tzinfo=timezone(timedelta(hours=-2))),
        datetime(1, 1, 2, 1, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["max", "min", "just-after", "just-before", "max-east", "min-west", "offset-late",
         "offset-early"],
)
def test_writer_time_at_the_ends_of_datetimes_range_is_refused(writer_time: datetime) -> None:
    """asyncpg would send datetime.max and datetime.min as infinities, which cannot be hashed."""
    assert refused(lambda: WriteContext(writer_time=writer_time).checked()) == (
        f"writer_time {writer_time.isoformat()} is outside the range "
        "0001-01-02T00:00:00+00:00 to 9999-12-30T00:00:00+00:00"
    )


@pytest.mark.parametrize(
    "writer_time",
    [
        WRITER_TIME_MIN,
        WRITER_TIME_MAX,
        datetime(9999, 12, 30, 14, tzinfo=timezone(timedelta(hours=14))),
        datetime(1, 1, 1, 12, tzinfo=timezone(timedelta(hours=-12))),
        datetime(1900, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["min", "max", "max-as-instant", "min-as-instant", "1900"],
)
def test_writer_time_within_the_range_is_accepted(writer_time: datetime) -> None:
    """The bounds are inclusive and compare instants, whatever the offset."""
    context = WriteContext(writer_time=writer_time)
    assert context.checked() is context
