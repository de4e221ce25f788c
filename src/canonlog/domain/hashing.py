"""The hash chain specification, version 1, in Python.

This module is the reference the database function ``canonlog.event_hash_v1``
is tested against (docs/reference/hash-spec.md has the same rules in prose and
golden vectors). Every field is framed so that no two different events share
an encoding:

- ``u32(n)``, ``i64(n)``: big-endian, the latter two's complement;
- ``bytes(b)``: ``u32(len(b)) || b``; ``text(s)``: ``bytes(utf8(s))``;
- ``opt(x)``: ``0x00`` for absent, ``0x01 || enc(x)`` for present;
- ``time(t)``: ``i64`` microseconds since 1970-01-01T00:00:00Z;
- ``uuid``: its 16 bytes; ``hash``: its 32 bytes.

``hash = SHA-256(text("canonlog/event/v1") || text(ledger_id) || i64(sequence)
|| uuid(event_id) || text(stream_id) || i64(stream_version) || text(event_type)
|| bytes(payload) || bytes(metadata) || opt(text(task_id)) ||
opt(text(execution_id)) || opt(text(correlation_id)) || opt(text(causation_id))
|| opt(text(agent_id)) || text(writer_id) || i64(epoch) || opt(time(writer_time))
|| time(recorded_at) || opt(text(signing_key_id)) || opt(bytes(signature)) || prev_hash)``
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Protocol

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_TAG_V1: Final = b"canonlog/event/v1"
REQUEST_TAG_V1: Final = b"canonlog/request/v1"
_ABSENT: Final = b"\x00"
_PRESENT: Final = b"\x01"


class HashedFields(Protocol):
    """What the event hash covers; RecordedEvent and export rows provide it."""

    @property
    def ledger_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def stream_version(self) -> int: ...
    @property
    def event_type(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def metadata(self) -> bytes: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def execution_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def writer_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def writer_time(self) -> datetime | None: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def signing_key_id(self) -> str | None: ...
    @property
    def signature(self) -> bytes | None: ...
    @property
    def prev_hash(self) -> bytes: ...


def frame_bytes(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def frame_text(value: str) -> bytes:
    return frame_bytes(value.encode("utf-8"))


def frame_opt_text(value: str | None) -> bytes:
    return _ABSENT if value is None else _PRESENT + frame_text(value)


def frame_i64(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


_TAG_FRAME: Final = frame_bytes(EVENT_TAG_V1)
_pack_u32 = struct.Struct(">I").pack
_pack_i64 = struct.Struct(">q").pack
#: Frames of texts that repeat from event to event (ledger, writer, stream and type
#: names, ids). Bounded, so a verifier's memory stays flat over any ledger.
_frames: dict[str | None, bytes] = {}
_FRAMES_MAX: Final = 8192


def _framed(value: str) -> bytes:
    framed = _frames.get(value)
    if framed is None:
        data = value.encode("utf-8")
        framed = _pack_u32(len(data)) + data
        if len(_frames) < _FRAMES_MAX:
            _frames[value] = framed
    return framed


def _framed_opt(value: str | None) -> bytes:
    return _ABSENT if value is None else _PRESENT + _framed(value)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def event_hash_input_v1(event: HashedFields) -> bytes:
    """Returns the exact bytes that SHA-256 digests for an event (hash version 1)."""
    # The same layout as the module docstring, built with cached frames and
    # struct packing: verification of long ledgers spends most of its time here.
    writer_time = event.writer_time
    signature = event.signature
    payload = event.payload
    metadata = event.metadata
    return b"".join((
        _TAG_FRAME,
        _framed(event.ledger_id),
        _pack_i64(event.sequence),
        event.event_id.bytes,
        _framed(event.stream_id),
        _pack_i64(event.stream_version),
        _framed(event.event_type),
        _pack_u32(len(payload)),
        payload,
        _pack_u32(len(metadata)),
        metadata,
        _framed_opt(event.task_id),
        _framed_opt(event.execution_id),
        _framed_opt(event.correlation_id),
        _framed_opt(event.causation_id),
        _framed_opt(event.agent_id),
        _framed(event.writer_id),
        _pack_i64(event.epoch),
        _ABSENT if writer_time is None else _PRESENT + _pack_i64(_micros(writer_time)),
        _pack_i64(_micros(event.recorded_at)),
        _framed_opt(event.signing_key_id),
        _ABSENT if signature is None else _PRESENT + _pack_u32(len(signature)) + signature,
        event.prev_hash,
    ))


def event_hash_v1(event: HashedFields) -> bytes:
    """Returns the SHA-256 chain hash of an event under hash version 1."""
    return hashlib.sha256(event_hash_input_v1(event)).digest()


def request_digest_v1(
    stream_id: str,
    task_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    agent_id: str | None,
    events: Sequence[tuple[str, bytes, bytes]],
) -> bytes:
    """Returns the digest that identifies an append for idempotent retries.

    It covers the stream, the write context except the execution id (the key) and
    the writer's clock, and each event's type, payload and metadata in order; not
    the event ids, which a retry may generate anew, nor the expected version.
    """
    parts = [
        frame_bytes(REQUEST_TAG_V1),
        frame_text(stream_id),
        frame_opt_text(task_id),
        frame_opt_text(correlation_id),
        frame_opt_text(causation_id),
        frame_opt_text(agent_id),
        len(events).to_bytes(4, "big"),
    ]
    for event_type, payload, metadata in events:
        parts += (frame_text(event_type), frame_bytes(payload), frame_bytes(metadata))
    return hashlib.sha256(b"".join(parts)).digest()
