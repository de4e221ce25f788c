"""Ledger export as JSON Lines, and reading it back for verification without a database.

One event per line, every field the hash covers. ``payload`` and ``metadata``
are the stored bytes as a JSON string (UTF-8 text), never re-encoded objects, so
the verifier hashes exactly what was stored; hashes are lowercase hex; times are
ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeVar

import orjson

from canonlog.application.chain_verification import verify_events
from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.application.verifier import ChainReport, SignaturePolicy
from canonlog.domain.errors import ExportFormatError
from canonlog.domain.events import RecordedEvent

FORMAT_VERSION = 1
T = TypeVar("T")


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
_MAX_INT = 2**63 - 1
_FIELDS = tuple(ExportedEvent._fields)
#: Fields that may be null, and the integer fields (all others are strings).
_NULLABLE = frozenset({"task_id", "execution_id", "correlation_id", "causation_id", "agent_id",
                       "writer_time", "signing_key_id", "signature"})
_INTEGERS = frozenset({"sequence", "stream_version", "epoch", "hash_version"})
_KINDS: tuple[tuple[str, Any, bool], ...] = tuple(
    (name, int if name in _INTEGERS else str, name in _NULLABLE) for name in _FIELDS)
_TYPE_NAMES = {int: "an integer", str: "a string", float: "a number that is not a 64-bit integer",
               bool: "a boolean", list: "an array", dict: "an object", type(None): "null"}


def exported_event(line: bytes | str, line_number: int = 0) -> ExportedEvent:
    """Parses one export line for verification.

    Every field is checked for its JSON type and range before anything uses it;
    raises ExportFormatError naming the line and the field at fault.
    """
    # The fast path accepts only what _checked_event accepts: the integers and the
    # strings nothing below would refuse are checked here, the other fields by
    # what parses them (a non-string fails encode, fromhex, fromisoformat, UUID).
    # A line it does not accept goes to _checked_event, which names what is wrong.
    try:
        d = orjson.loads(line)
        version, sequence, stream_version = d["format"], d["sequence"], d["stream_version"]
        epoch, hash_version = d["epoch"], d["hash_version"]
        ledger_id, stream_id, event_type, writer_id = (d["ledger_id"], d["stream_id"],
                                                       d["event_type"], d["writer_id"])
        task_id, execution_id, correlation_id = d["task_id"], d["execution_id"], d["correlation_id"]
        causation_id, agent_id, signing_key_id = (d["causation_id"], d["agent_id"],
                                                  d["signing_key_id"])
        writer_time, prev_hash, hash_, signature = (d["writer_time"], d["prev_hash"], d["hash"],
                                                    d["signature"])
        if (type(version) is int and version == FORMAT_VERSION
                and type(sequence) is int and 0 <= sequence <= _MAX_INT
                and type(stream_version) is int and 0 <= stream_version <= _MAX_INT
                and type(epoch) is int and 0 <= epoch <= _MAX_INT
                and type(hash_version) is int and 0 <= hash_version <= _MAX_INT
                and type(ledger_id) is str and type(stream_id) is str
                and type(event_type) is str and type(writer_id) is str
                and (task_id is None or type(task_id) is str)
                and (execution_id is None or type(execution_id) is str)
                and (correlation_id is None or type(correlation_id) is str)
                and (causation_id is None or type(causation_id) is str)
                and (agent_id is None or type(agent_id) is str)
                and (signing_key_id is None or type(signing_key_id) is str)
                and len(prev_hash) == 64 and len(hash_) == 64
                and (signature is None or len(signature) == 128)):
            event = ExportedEvent(
                ledger_id, sequence, uuid.UUID(d["event_id"]), stream_id, stream_version,
                event_type, d["payload"].encode(), d["metadata"].encode(), task_id, execution_id,
                correlation_id, causation_id, agent_id, writer_id, epoch,
                None if writer_time is None else _fromiso(writer_time),
                _fromiso(d["recorded_at"]), hash_version, _fromhex(prev_hash), _fromhex(hash_),
                signing_key_id, None if signature is None else _fromhex(signature))
            if (len(event.prev_hash) == 32 and len(event.hash) == 32
                    and (signature is None or len(event.signature or b"") == 64)
                    and event.recorded_at.tzinfo is not None
                    and (event.writer_time is None or event.writer_time.tzinfo is not None)):
                return event
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return _checked_event(line, line_number)


def _checked_event(line: bytes | str, line_number: int) -> ExportedEvent:
    """exported_event field by field, raising ExportFormatError at the first fault."""
    try:
        d = orjson.loads(line)
    except ValueError as exc:
        raise ExportFormatError(f"line {line_number}: not JSON: {exc}") from None
    if type(d) is not dict:
        raise ExportFormatError(f"line {line_number}: {_TYPE_NAMES.get(type(d), 'a value')} "
                                f"where a JSON object was expected")
    version = d.get("format")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ExportFormatError(f"line {line_number}: unknown export format {version!r}")
    for name, kind, nullable in _KINDS:
        value: Any = d.get(name, _MISSING)
        if type(value) is not kind and not (nullable and value is None):
            raise _field_error(line_number, name, value, kind)
        if kind is int and not 0 <= value <= _MAX_INT:
            raise ExportFormatError(f"line {line_number}: field {name!r} is {value}, out of "
                                    f"range (0..{_MAX_INT})")
    writer_time = d["writer_time"]
    signature = d["signature"]
    return ExportedEvent(
        d["ledger_id"], d["sequence"], _parsed(line_number, "event_id", uuid.UUID, d),
        d["stream_id"], d["stream_version"], d["event_type"], _utf8(line_number, "payload", d),
        _utf8(line_number, "metadata", d), d["task_id"], d["execution_id"], d["correlation_id"],
        d["causation_id"], d["agent_id"], d["writer_id"], d["epoch"],
        None if writer_time is None else _moment(line_number, "writer_time", d),
        _moment(line_number, "recorded_at", d), d["hash_version"],
        _digest(line_number, "prev_hash", d, 32), _digest(line_number, "hash", d, 32),
        d["signing_key_id"], None if signature is None else _digest(line_number, "signature", d, 64),
    )


_MISSING = object()


def _field_error(line_number: int, name: str, value: object, kind: type) -> ExportFormatError:
    if value is _MISSING:
        return ExportFormatError(f"line {line_number}: field {name!r} is missing")
    found = _TYPE_NAMES.get(type(value), "a value")
    return ExportFormatError(f"line {line_number}: field {name!r} is {found}, expected "
                             f"{_TYPE_NAMES[kind]}")


def _parsed(line_number: int, name: str, parse: Callable[[str], T], d: dict[str, Any]) -> T:
    try:
        return parse(d[name])
    except ValueError as exc:
        raise ExportFormatError(f"line {line_number}: field {name!r} is not valid: {exc}") from None


def _utf8(line_number: int, name: str, d: dict[str, Any]) -> bytes:
    try:
        return d[name].encode()  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        raise ExportFormatError(f"line {line_number}: field {name!r} is not valid "
                                f"UTF-8 text") from None


def _moment(line_number: int, name: str, d: dict[str, Any]) -> datetime:
    moment = _parsed(line_number, name, _fromiso, d)
    if moment.tzinfo is None:
        raise ExportFormatError(f"line {line_number}: field {name!r} is a time without a UTC "
                                f"offset")
    return moment


def _digest(line_number: int, name: str, d: dict[str, Any], size: int) -> bytes:
    text = d[name]
    raw = _parsed(line_number, name, _fromhex, d) if len(text) == 2 * size else b""
    if len(raw) != size:
        raise ExportFormatError(f"line {line_number}: field {name!r} is not {size} bytes "
                                f"as {2 * size} hex digits")
    return raw


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
