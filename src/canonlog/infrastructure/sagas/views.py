"""A saga's state and history as JSON, the same for the CLI and the HTTP service."""

from __future__ import annotations

import json
from typing import Any

from canonlog.domain.events import RecordedEvent
from canonlog.domain.saga import SagaState


def saga_json(state: SagaState) -> dict[str, Any]:
    return {
        "saga_id": state.saga_id, "name": state.name, "trace_id": state.trace_id,
        "status": state.status.value, "aborted": state.aborted, "version": state.version,
        "reasons": list(state.reasons), "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
        "steps": [{**s.step.as_json(), "status": s.status.value, "attempts": s.attempts,
                   "compensation_attempts": s.compensation_attempts, "error": s.error,
                   "result": dict(s.result) if s.result is not None else None}
                  for s in state.steps],
    }


def history_json(events: list[RecordedEvent]) -> list[dict[str, Any]]:
    return [{"sequence": e.sequence, "version": e.stream_version, "type": e.event_type,
             "recorded_at": e.recorded_at.isoformat(), "payload": json.loads(e.payload),
             "hash": e.hash.hex()} for e in events]


def history_lines(events: list[RecordedEvent]) -> str:
    """One line per event: sequence, time, type and payload, oldest first."""
    return "\n".join(f"#{e.sequence} {e.recorded_at.isoformat(timespec='milliseconds')} "
                     f"{e.event_type} {e.payload.decode()}" for e in events)
