"""Events as callers submit them and as the ledger records them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from canonlog.domain.canonical import INT_MAX, RawJson, canonical_json
from canonlog.domain.errors import InvalidEvent

DEFAULT_LEDGER: Final = "main"
#: Streams whose id starts with this prefix hold the ledger's own governance events
#: (grants, halts); callers cannot append to them.
SYSTEM_STREAM_PREFIX: Final = "$"
SYSTEM_STREAM: Final = "$ledger"
GENESIS_HASH: Final = bytes(32)
HASH_VERSION: Final = 1
#: The range of writer_time: datetime's own, less a day at each end. asyncpg sends
#: datetime.min and datetime.max as -infinity and infinity, which the hash cannot
#: encode; a day is more than any UTC offset, so no offset brings a value back to an end.
WRITER_TIME_MIN: Final = datetime(1, 1, 2, tzinfo=UTC)
WRITER_TIME_MAX: Final = datetime(9999, 12, 30, tzinfo=UTC)


class StreamState(enum.Enum):
    """Expected-version conditions other than an exact version (KurrentDB semantics)."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"


#: An exact stream version (the version of the stream's last event) or a StreamState.
ExpectedVersion = int | StreamState


def expected_version_code(expected: ExpectedVersion) -> int | None:
    """Encodes an expected version as the append function takes it: NULL, -1, 0 or N."""
    if expected is StreamState.ANY:
        return None
    if expected is StreamState.STREAM_EXISTS:
        return -1
    if expected is StreamState.NO_STREAM:
        return 0
    if isinstance(expected, bool) or not isinstance(expected, int) or not 1 <= expected <= INT_MAX:
        raise InvalidEvent(
            f"expected_version must be a StreamState or a version >= 1, got {expected!r}"
        )
    return expected


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits enforced before anything is sent to the database."""

    max_payload_bytes: int = 1_048_576
    max_metadata_bytes: int = 65_536
    max_name_length: int = 256
    max_events_per_append: int = 10_000


DEFAULT_LIMITS: Final = Limits()


def check_name(value: object, what: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Returns value when it is a usable stream id, event type or id; raises InvalidEvent."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidEvent(f"{what} must not be empty")
    if len(value) > limits.max_name_length:
        raise InvalidEvent(f"{what} is {len(value)} characters; the limit is {limits.max_name_length}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEvent(f"{what} contains a lone surrogate") from exc
    if not value.isprintable():
        raise InvalidEvent(f"{what} {value!r} contains control or unprintable characters")
    return value


def check_optional_name(value: object, what: str, limits: Limits = DEFAULT_LIMITS) -> str | None:
    return None if value is None else check_name(value, what, limits)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append: a type, a canonical JSON payload and optional metadata.

    Construct with NewEvent.create, which validates and canonicalises; the fields
    hold the exact bytes that will be stored and hashed.
    """

    event_type: str
    payload: bytes
    metadata: bytes = b"{}"
    #: None lets the ledger assign a UUID (version 7 on PostgreSQL 18, otherwise a random
    #: one); a signed event must carry its own.
    event_id: uuid.UUID | None = None
    #: An agent's Ed25519 signature over the signable content (canonlog.domain.signing).
    signing_key_id: str | None = None
    signature: bytes | None = None

    @classmethod
    def create(
        cls,
        event_type: str,
        payload: RawJson,
        metadata: RawJson | None = None,
        *,
        event_id: uuid.UUID | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> NewEvent:
        """Validates and canonicalises an event; raises InvalidEvent naming the problem."""
        check_name(event_type, "event_type", limits)
        if event_id is not None and not isinstance(event_id, uuid.UUID):
            raise InvalidEvent(f"event_id must be a UUID, got {type(event_id).__name__}")
        return cls(
            event_type,
            canonical_json(payload, what="payload", max_bytes=limits.max_payload_bytes),
            b"{}" if metadata is None else canonical_json(
                metadata, what="metadata", max_bytes=limits.max_metadata_bytes
            ),
            event_id,
        )


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Who writes and why: carried by every event of one append."""

    task_id: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    agent_id: str | None = None
    writer_time: datetime | None = None

    def checked(self, limits: Limits = DEFAULT_LIMITS) -> WriteContext:
        """Returns self when every field is usable; raises InvalidEvent naming the problem."""
        if (self.task_id is not None or self.execution_id is not None
                or self.correlation_id is not None or self.causation_id is not None
                or self.agent_id is not None):
            for name in ("task_id", "execution_id", "correlation_id", "causation_id", "agent_id"):
                check_optional_name(getattr(self, name), name, limits)
        moment = self.writer_time
        if moment is None:
            return self
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise InvalidEvent("writer_time must be a timezone-aware datetime")
        if not WRITER_TIME_MIN <= moment <= WRITER_TIME_MAX:
            raise InvalidEvent(
                f"writer_time {moment.isoformat()} is outside the range "
                f"{WRITER_TIME_MIN.isoformat()} to {WRITER_TIME_MAX.isoformat()}"
            )
        return self


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """Events to append atomically to one stream, under one expected version."""

    stream_id: str
    events: tuple[NewEvent, ...]
    expected_version: ExpectedVersion = StreamState.ANY
    context: WriteContext = WriteContext()

    @classmethod
    def create(
        cls,
        stream_id: str,
        events: list[NewEvent] | tuple[NewEvent, ...],
        *,
        expected_version: ExpectedVersion = StreamState.ANY,
        context: WriteContext | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> AppendRequest:
        """Validates a request; raises InvalidEvent naming the problem."""
        check_name(stream_id, "stream_id", limits)
        if stream_id.startswith(SYSTEM_STREAM_PREFIX):
            raise InvalidEvent(
                f"stream_id {stream_id!r} starts with {SYSTEM_STREAM_PREFIX!r}, "
                "which is reserved for the ledger's own events"
            )
        events = tuple(events)
        if not events:
            raise InvalidEvent("an append needs at least one event")
        if len(events) > limits.max_events_per_append:
            raise InvalidEvent(
                f"an append holds {len(events)} events; the limit is {limits.max_events_per_append}"
            )
        for event in events:
            if not isinstance(event, NewEvent):
                raise InvalidEvent(f"events must be NewEvent instances, got {type(event).__name__}")
            # Events may have been built under other limits than this ledger's.
            if len(event.payload) > limits.max_payload_bytes:
                raise InvalidEvent(f"payload is {len(event.payload)} bytes in canonical form; "
                                   f"the limit is {limits.max_payload_bytes}")
            if len(event.metadata) > limits.max_metadata_bytes:
                raise InvalidEvent(f"metadata is {len(event.metadata)} bytes in canonical form; "
                                   f"the limit is {limits.max_metadata_bytes}")
        expected_version_code(expected_version)
        return cls(stream_id, events, expected_version, (context or WriteContext()).checked(limits))


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the ledger holds it, with everything its hash covers."""

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
    signing_key_id: str | None = None
    signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class WriterGrant:
    """The right to write to a ledger: the database accepts events only under it."""

    ledger_id: str
    writer_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Head:
    """The newest event of a ledger: sequence 0 and the genesis hash when empty."""

    ledger_id: str
    sequence: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class LedgerState:
    """A ledger's grant and halt flag as the database holds them."""

    ledger_id: str
    writer_id: str | None
    epoch: int
    halted: bool
    halt_reason: str | None


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """A public key registered in a ledger by a chained event: an agent's or a witness's."""

    ledger_id: str
    key_id: str
    purpose: str
    owner_id: str
    public_key: bytes
    added_seq: int
    revoked_seq: int | None = None
