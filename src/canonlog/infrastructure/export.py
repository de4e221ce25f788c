"""Ledger export as JSON Lines, and reading it back for verification without a database.

One event per line, every field the hash covers. ``payload`` and ``metadata``
are the stored bytes as a JSON string (UTF-8 text), never re-encoded objects, so
the verifier hashes exactly what was stored; hashes are lowercase hex; times are
ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, TextIO

import orjson

from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.application.verifier import ChainReport, SignaturePolicy, verify_events
from canonlog.domain.errors import ExportFormatError
from canonlog.domain.events import RecordedEvent

FORMAT_VERSION = 1


def event_to_json(event: RecordedEvent) -> str:
    """Returns one export line (without the newline) for an event."""
    return orjson.dumps({
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
    }).decode("utf-8")


def event_from_json(line: str | bytes, line_number: int = 0) -> RecordedEvent:
    """Parses one export line; raises ExportFormatError naming the line and the problem."""
    return RecordedEvent(*exported_event(line, line_number))


class ExportedEvent(NamedTuple):
    """An export line as the verifier reads it: the fields the hash covers, nothing more.

    A tuple rather than a RecordedEvent because verification of long exports spends
    much of its time building one object per line. Its fields are RecordedEvent's, in
    the same order.
    """

    ledger_id: str
    sequence: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    payload: bytes
    metadata: bytes
    task_id: str | None
    execution_id: str | None
    correlation_id: str | None
    causation_id: str | None
    agent_id: str | None
    writer_id: str
    epoch: int
    writer_time: datetime | None
    recorded_at: datetime
    hash_version: int
    prev_hash: bytes
    hash: bytes
    signing_key_id: str | None
    signature: bytes | None


_fromiso = datetime.fromisoformat
_fromhex = bytes.fromhex


def exported_event(line: bytes | str, line_number: int = 0) -> ExportedEvent:
    """Parses one export line for verification; raises ExportFormatError naming the line."""
    try:
        d = orjson.loads(line)
        if d["format"] != FORMAT_VERSION:
            raise ExportFormatError(f"line {line_number}: unknown export format {d['format']!r}")
        writer_time = d["writer_time"]
        signature = d["signature"]
        return ExportedEvent(
            d["ledger_id"], d["sequence"], uuid.UUID(d["event_id"]), d["stream_id"],
            d["stream_version"], d["event_type"], d["payload"].encode(), d["metadata"].encode(),
            d["task_id"], d["execution_id"], d["correlation_id"], d["causation_id"],
            d["agent_id"], d["writer_id"], d["epoch"],
            None if writer_time is None else _fromiso(writer_time), _fromiso(d["recorded_at"]),
            d["hash_version"], _fromhex(d["prev_hash"]), _fromhex(d["hash"]),
            d["signing_key_id"], None if signature is None else _fromhex(signature),
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


def export_events(path: Path) -> tuple[str, Iterator[ExportedEvent]]:
    """The ledger of an export (its first line's) and its events, read one line at a time.

    Raises ExportFormatError when the file holds no events or its first line is
    malformed; a later malformed line raises it while iterating.
    """
    def lines() -> Iterator[ExportedEvent]:
        with path.open("rb") as source:
            for number, line in enumerate(source, 1):
                if line.strip():
                    yield exported_event(line, number)

    events = lines()
    first = next(events, None)
    if first is None:
        raise ExportFormatError(f"{path} holds no events")

    def all_events() -> Iterator[ExportedEvent]:
        yield first
        yield from events

    return first.ledger_id, all_events()


def verify_export(
    path: Path,
    *,
    ledger_id: str | None = None,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
) -> ChainReport:
    """Verifies an export's chain alone, with no database; the ledger is the first line's
    unless given. verify_exported holds it to trusted checkpoints too."""
    first_ledger, events = export_events(path)
    return verify_events(events, ledger_id or first_ledger, signatures=signatures,
                         progress=progress)
