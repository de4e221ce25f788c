"""Independent verification of a ledger's hash chain.

The verifier trusts neither the writer nor the stored hashes: it recomputes
every hash from the event's fields (docs/reference/hash-spec.md) and checks
that sequences run 1..N without gaps, that each event links to the stored hash
of the one before, and that each stream's versions run 1..n. It keeps only the
previous hash and each stream's last version, so memory does not grow with the
number of events, and it reports progress as it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from canonlog.application.ports import ProgressCallback
from canonlog.domain.events import GENESIS_HASH, HASH_VERSION, RecordedEvent
from canonlog.domain.hashing import HashedFields, event_hash_v1

DEFAULT_PAGE_SIZE: Final = 5000


class VerifiableEvent(HashedFields, Protocol):
    @property
    def hash_version(self) -> int: ...
    @property
    def hash(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One place where the ledger is not what its chain says.

    kind is one of: missing_sequence, unexpected_sequence, prev_hash_mismatch,
    hash_mismatch, unknown_hash_version, stream_version, ledger_mismatch.
    """

    sequence: int
    kind: str
    message: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of a verification: ok only when no break was found."""

    ledger_id: str
    events_checked: int
    first_sequence: int | None
    last_sequence: int
    head_hash: bytes
    breaks: tuple[ChainBreak, ...]
    breaks_total: int

    @property
    def ok(self) -> bool:
        return self.breaks_total == 0

    @property
    def first_break(self) -> ChainBreak | None:
        return self.breaks[0] if self.breaks else None

    def summary(self) -> str:
        if self.ok:
            return (f"ledger {self.ledger_id}: {self.events_checked} events verified, "
                    f"head {self.last_sequence} {self.head_hash.hex()}")
        first = self.breaks[0]
        return (f"ledger {self.ledger_id}: chain broken at sequence {first.sequence}: "
                f"{first.message} ({self.breaks_total} problem(s) in {self.events_checked} events)")


@dataclass(slots=True)
class ChainVerifier:
    """Checks events fed in sequence order; start mid-chain with after_sequence/after_hash."""

    ledger_id: str
    after_sequence: int = 0
    after_hash: bytes = GENESIS_HASH
    max_reported: int = 100
    _last_sequence: int = field(init=False)
    _last_hash: bytes = field(init=False)
    _first_sequence: int | None = field(init=False, default=None)
    _checked: int = field(init=False, default=0)
    _streams: dict[str, int] = field(init=False, default_factory=dict)
    _breaks: list[ChainBreak] = field(init=False, default_factory=list)
    _breaks_total: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._last_sequence = self.after_sequence
        self._last_hash = self.after_hash

    def _report(self, sequence: int, kind: str, message: str,
                expected: str | None = None, found: str | None = None) -> None:
        self._breaks_total += 1
        if len(self._breaks) < self.max_reported:
            self._breaks.append(ChainBreak(sequence, kind, message, expected, found))

    def add(self, event: VerifiableEvent) -> None:
        """Checks one event against the chain so far."""
        sequence = event.sequence
        expected_sequence = self._last_sequence + 1
        if self._first_sequence is None:
            self._first_sequence = sequence
        self._checked += 1
        if event.ledger_id != self.ledger_id:
            self._report(sequence, "ledger_mismatch",
                         f"event belongs to ledger {event.ledger_id!r}, not {self.ledger_id!r}",
                         self.ledger_id, event.ledger_id)
        if sequence > expected_sequence:
            missing = (str(expected_sequence) if sequence == expected_sequence + 1
                       else f"{expected_sequence}..{sequence - 1}")
            self._report(expected_sequence, "missing_sequence",
                         f"sequence {missing} is missing: {sequence} follows {self._last_sequence}",
                         str(expected_sequence), str(sequence))
        elif sequence < expected_sequence:
            self._report(sequence, "unexpected_sequence",
                         f"sequence {sequence} appears after {self._last_sequence}",
                         str(expected_sequence), str(sequence))
        if event.hash_version != HASH_VERSION:
            self._report(sequence, "unknown_hash_version",
                         f"hash version {event.hash_version} is not known to this verifier",
                         str(HASH_VERSION), str(event.hash_version))
        else:
            if event.prev_hash != self._last_hash:
                self._report(sequence, "prev_hash_mismatch",
                             f"previous hash does not match the hash of sequence "
                             f"{self._last_sequence}",
                             self._last_hash.hex(), event.prev_hash.hex())
            computed = event_hash_v1(event)
            if computed != event.hash:
                self._report(sequence, "hash_mismatch",
                             "stored hash does not match the hash recomputed from the event",
                             computed.hex(), event.hash.hex())
        last_version = self._streams.get(event.stream_id)
        if last_version is None and self.after_sequence == 0:
            last_version = 0
        if last_version is not None and event.stream_version != last_version + 1:
            self._report(sequence, "stream_version",
                         f"stream {event.stream_id!r} goes from version {last_version} "
                         f"to {event.stream_version}",
                         str(last_version + 1), str(event.stream_version))
        self._streams[event.stream_id] = event.stream_version
        if sequence > self._last_sequence:
            self._last_sequence = sequence
        self._last_hash = event.hash

    def report(self) -> VerificationReport:
        return VerificationReport(
            ledger_id=self.ledger_id,
            events_checked=self._checked,
            first_sequence=self._first_sequence,
            last_sequence=self._last_sequence,
            head_hash=self._last_hash,
            breaks=tuple(self._breaks),
            breaks_total=self._breaks_total,
        )


def verify_events(
    events: Iterable[VerifiableEvent],
    ledger_id: str,
    *,
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> VerificationReport:
    """Verifies events given in sequence order, from the start of the ledger."""
    verifier = ChainVerifier(ledger_id)
    for count, event in enumerate(events, 1):
        verifier.add(event)
        if progress is not None and count % progress_every == 0:
            progress(count)
    report = verifier.report()
    if progress is not None:
        progress(report.events_checked)
    return report


class EventReader(Protocol):
    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]: ...


async def _pages(reader: EventReader, ledger_id: str, after: int, until: int | None,
                 page_size: int) -> AsyncIterator[list[RecordedEvent]]:
    # Fetch the next page while the current one is being hashed.
    pending = asyncio.ensure_future(reader.read_all(ledger_id, after=after, limit=page_size))
    while True:
        page = await pending
        if until is not None:
            page = [e for e in page if e.sequence <= until]
        if not page:
            return
        last = page[-1].sequence
        done = len(page) < page_size or (until is not None and last >= until)
        if not done:
            pending = asyncio.ensure_future(reader.read_all(ledger_id, after=last, limit=page_size))
        yield page
        if done:
            return


async def verify_chain(
    reader: EventReader,
    ledger_id: str,
    *,
    after_sequence: int = 0,
    after_hash: bytes = GENESIS_HASH,
    until: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """Verifies a ledger read page by page, from after_sequence (whose hash is after_hash).

    Starting mid-chain is for incremental verification from a trusted
    checkpoint; the first event must then link to after_hash.
    """
    verifier = ChainVerifier(ledger_id, after_sequence=after_sequence, after_hash=after_hash)
    checked = 0
    async for page in _pages(reader, ledger_id, after_sequence, until, page_size):
        for event in page:
            verifier.add(event)
        checked += len(page)
        if progress is not None:
            progress(checked)
    return verifier.report()
