"""Export lines round-trip every field a RecordedEvent holds."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from canonlog.domain.events import RecordedEvent
from canonlog.infrastructure.export import ExportedEvent, event_from_json, event_to_json


def test_exported_events_have_the_fields_of_recorded_events_in_order():
    assert ExportedEvent._fields == tuple(f.name for f in dataclasses.fields(RecordedEvent))


def test_an_event_survives_export_and_import_unchanged():
    event = RecordedEvent(
        "main", 7, uuid.uuid4(), "order-1", 3, "placed", '{"é":"ü"}'.encode(), b"{}",
        "task", "exec", None, "cause", "agent-7", "writer-a", 2,
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 6, 7, tzinfo=UTC),
        1, bytes(range(32)), bytes(range(1, 33)), "k-1", bytes(64))
    assert event_from_json(event_to_json(event)) == event
