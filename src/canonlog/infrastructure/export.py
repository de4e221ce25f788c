"""Ledger export as JSON Lines, and reading it back for verification without a database.

One event per line, every field the hash covers. ``payload`` and ``metadata``
are the stored bytes as a JSON string (UTF-8 text), never re-encoded objects, so
the verifier hashes exactly what was stored; hashes are lowercase hex; times are
ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from canonlog.application.ports import ProgressCallback
from canonlog.application.verifier import (
    EventReader,
    SignaturePolicy,
    VerificationReport,
    verify_events,
)
from canonlog.domain.errors import ExportFormatError
from canonlog.domain.events import RecordedEvent

FORMAT_VERSION = 1


def event_to_json(event: RecordedEvent) -> str:
    """Returns one export line (without the newline) for an event."""
    return json.dumps({
        "format": FORMAT_VERSION,
        "ledger_id": event.ledger_id,
        "sequence": event.sequence,
        "event_id": str(event.event_id),
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "event_type": event.event_type,
        "payload": event.payload.decode("utf-8"),
        "metadata": event.metadata.decode("utf-8"),
        "task_id": event.task_id,
        "execution_id": event.execution_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "agent_id": event.agent_id,
        "writer_id": event.writer_id,
        "epoch": event.epoch,
        "writer_time": None if event.writer_time is None else event.writer_time.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "hash_version": event.hash_version,
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
        "signing_key_id": event.signing_key_id,
        "signature": None if event.signature is None else event.signature.hex(),
    }, ensure_ascii=False, separators=(",", ":"))


def event_from_json(line: str, line_number: int = 0) -> RecordedEvent:
    """Parses one export line; raises ExportFormatError naming the line and the problem."""
    try:
        data: dict[str, Any] = json.loads(line)
        if data.get("format") != FORMAT_VERSION:
            raise ExportFormatError(f"line {line_number}: unknown export format {data.get('format')!r}")
        writer_time = data["writer_time"]
        signature = data["signature"]
        return RecordedEvent(
            ledger_id=data["ledger_id"],
            sequence=data["sequence"],
            event_id=uuid.UUID(data["event_id"]),
            stream_id=data["stream_id"],
            stream_version=data["stream_version"],
            event_type=data["event_type"],
            payload=data["payload"].encode("utf-8"),
            metadata=data["metadata"].encode("utf-8"),
            task_id=data["task_id"],
            execution_id=data["execution_id"],
            correlation_id=data["correlation_id"],
            causation_id=data["causation_id"],
            agent_id=data["agent_id"],
            writer_id=data["writer_id"],
            epoch=data["epoch"],
            writer_time=None if writer_time is None else datetime.fromisoformat(writer_time),
            recorded_at=datetime.fromisoformat(data["recorded_at"]),
            hash_version=data["hash_version"],
            prev_hash=bytes.fromhex(data["prev_hash"]),
            hash=bytes.fromhex(data["hash"]),
            signing_key_id=data["signing_key_id"],
            signature=None if signature is None else bytes.fromhex(signature),
        )
    except ExportFormatError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportFormatError(f"line {line_number}: not a canonlog export line: {exc!r}") from exc


async def export_ledger(
    reader: EventReader,
    ledger_id: str,
    out: TextIO,
    *,
    after: int = 0,
    page_size: int = 5000,
    progress: ProgressCallback | None = None,
) -> int:
    """Writes the ledger's events after `after` to out, streaming; returns the count."""
    count = 0
    while page := await reader.read_all(ledger_id, after=after, limit=page_size):
        out.write("\n".join(event_to_json(e) for e in page))
        out.write("\n")
        count += len(page)
        after = page[-1].sequence
        if progress is not None:
            progress(count)
    return count


def read_export(path: Path) -> Iterator[RecordedEvent]:
    """Yields the events of an export file one at a time (constant memory)."""
    with path.open("r", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield event_from_json(line, number)


def verify_export(
    path: Path,
    *,
    ledger_id: str | None = None,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """Verifies an export with no database; the ledger is the first line's unless given."""
    events = read_export(path)
    first = next(events, None)
    if first is None:
        raise ExportFormatError(f"{path} holds no events")
    ledger = ledger_id or first.ledger_id

    def all_events() -> Iterator[RecordedEvent]:
        yield first
        yield from events

    return verify_events(all_events(), ledger, signatures=signatures, progress=progress)
