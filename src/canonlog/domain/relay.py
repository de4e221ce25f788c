"""What a relay consumer is and knows: its cursor, its failed events, its backoff, and
the range digests that reconciliation compares. Pure rules, no I/O."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from canonlog.domain.errors import InvalidConsumer

#: What a consumer does with an event that failed max_attempts times: stop and wait
#: for an operator, or set the event aside as a dead letter and go on.
PoisonPolicy = Literal["stop", "dead_letter"]
POISON_POLICIES: tuple[PoisonPolicy, ...] = ("stop", "dead_letter")

#: An event's sync status at one consumer.
SyncStatus = Literal["pending", "synced", "failed", "dead_letter"]

#: Longest error text kept for a failed event.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a consumer is registered: the ledger it follows and its poison policy."""

    name: str
    ledger_id: str
    poison_policy: PoisonPolicy = "dead_letter"
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if not 1 <= len(self.name) <= 128 or not self.name.isprintable():
            raise InvalidConsumer("a consumer name is 1 to 128 printable characters")
        if self.poison_policy not in POISON_POLICIES:
            raise InvalidConsumer(f"poison policy must be one of {POISON_POLICIES}")
        if self.max_attempts < 1:
            raise InvalidConsumer("max_attempts must be at least 1")


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """A consumer as stored: its cursor (the last event its destination confirmed and
    that event's hash; sequence 0 and no hash before the first) and its flags.
    ``stopped`` holds why the consumer stopped, or None while it may run."""

    name: str
    ledger_id: str
    cursor_seq: int
    cursor_hash: bytes | None
    poison_policy: PoisonPolicy
    max_attempts: int
    paused: bool
    stopped: str | None
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """An event a consumer failed to deliver: retried at next_attempt_at while
    ``failed``, set aside for an operator when ``dead_letter``."""

    consumer: str
    sequence: int
    hash: bytes
    status: Literal["failed", "dead_letter"]
    attempts: int
    last_error: str
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of
    min(cap, base * 2**(n-1)) seconds, so retries of many consumers spread out."""

    base: float = 0.5
    cap: float = 60.0

    def delay(self, attempts: int, random: Callable[[], float]) -> float:
        """Returns the wait after the attempts-th failed attempt; random() is in [0, 1)."""
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        return ceiling * (0.5 + 0.5 * random())


def status_of(sequence: int, cursor_seq: int, failure: DeliveryFailure | None) -> SyncStatus:
    """An event's sync status: a recorded failure wins, then synced at or below the cursor."""
    if failure is not None:
        return failure.status
    return "synced" if sequence <= cursor_seq else "pending"


def clipped_error(error: BaseException | str) -> str:
    """The error text stored with a failed event: type and message, clipped."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS] or "unknown error"


@dataclass(frozen=True, slots=True)
class RangeDigest:
    """How many (sequence, hash) pairs lie in first..last and the SHA-256 of them all,
    each as the 8-byte big-endian sequence then the 32-byte hash, in sequence order."""

    first: int
    last: int
    count: int
    digest: bytes


def range_digest(first: int, last: int, pairs: Iterable[tuple[int, bytes]]) -> RangeDigest:
    """Returns the RangeDigest of the pairs, which must be in sequence order within range."""
    sha = hashlib.sha256()
    count = 0
    for sequence, digest in pairs:
        sha.update(struct.pack(">q", sequence) + digest)
        count += 1
    return RangeDigest(first, last, count, sha.digest())


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """What a destination holds that differs from the chain up to ``checked_through``:
    sequences missing there, extra there (not in the chain), and altered (another hash)."""

    consumer: str
    checked_through: int
    missing: tuple[int, ...]
    extra: tuple[int, ...]
    altered: tuple[int, ...]
    redelivered: int = 0
    expired_idempotency_records: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.altered)
