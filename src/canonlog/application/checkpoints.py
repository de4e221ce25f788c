"""Signed checkpoints: publishing them, trusting them, and holding the database to them.

A superuser can cut off a ledger's tail, restore an older copy or rewrite the
whole chain with recomputed hashes; the chain alone cannot tell. A checkpoint
(domain/checkpoint.py) signed with a key the database never sees, kept in a
CheckpointStore outside it, can: the database must still hold, at every
checkpointed sequence, the hash the checkpoint vouches for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import CheckpointStore, EventReader, HeadStore, StoredCheckpoint
from canonlog.application.verification import verify_ledger
from canonlog.domain.checkpoint import (
    Checkpoint,
    CheckpointVerification,
    SignedCheckpoint,
    TrustedKey,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignature,
)
from canonlog.domain.errors import CanonlogError, CheckpointConflict, CheckpointFormatError, TamperDetected
from canonlog.domain.events import Head

logger = structlog.get_logger("canonlog.checkpoints")

#: Seconds between the publisher's attempts after a failure, and at the least.
_RETRY_WAIT = 5.0
_MIN_WAIT = 0.01


def default_origin(ledger_id: str) -> str:
    """The origin line of a ledger's checkpoints unless one is configured."""
    return f"canonlog/{ledger_id}"


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """The ledger's checkpoint key and the name its signature lines carry."""

    key_name: str
    private_key: Ed25519PrivateKey

    def trusted_key(self) -> TrustedKey:
        """The public half, as a verifier trusts it."""
        return TrustedKey(self.key_name, self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))


# -- creating and publishing -----------------------------------------------------------


async def create_checkpoint(reader: EventReader, ledger_id: str, signer: CheckpointSigner, *,
                            origin: str, now: datetime | None = None,
                            trusted: Iterable[Head] = (),
                            verified: Head | None = None) -> SignedCheckpoint:
    """Verifies the ledger, then signs a checkpoint of the head it verified.

    Every hash is recomputed from genesis, unless verified names a head this
    signer already vouched for (its own last checkpoint): then from there on, the
    store required to still hold it. Raises TamperDetected, signing nothing, when
    the chain is broken or the store contradicts a trusted checkpoint: a signature
    must not launder an edited history.
    """
    trusted = [*trusted, *([verified] if verified is not None else [])]
    verification = await verify_ledger(reader, ledger_id, trusted=trusted, anchor=verified)
    if not verification.checkpoints.ok:
        raise TamperDetected("no checkpoint signed: "
                             + verification.checkpoints.mismatches[0].message)
    broken = verification.chain.first_break
    if broken is not None:
        raise TamperDetected(f"no checkpoint signed: the chain is broken at sequence "
                             f"{broken.sequence}: {broken.message}")
    chain = verification.chain
    head = Head(ledger_id, chain.last_sequence, chain.head_hash)
    checkpoint = Checkpoint.of(head, origin, now or datetime.now(UTC))
    return sign_checkpoint(checkpoint, signer.key_name, signer.private_key)


@dataclass(frozen=True, slots=True)
class PublishedCheckpoint:
    """A checkpoint and where it is now kept; ``new`` is False where it was already there."""

    checkpoint: SignedCheckpoint
    locations: tuple[str, ...]
    new: bool


async def publish_checkpoint(
    reader: EventReader, ledger_id: str, signer: CheckpointSigner,
    stores: Sequence[CheckpointStore], *, origin: str, now: datetime | None = None,
    trusted: Iterable[Head] = (), verified: Head | None = None,
) -> PublishedCheckpoint:
    """Verifies the ledger (create_checkpoint), signs its head and publishes it to every store.

    A store that already holds a checkpoint at that sequence keeps it; when that
    one vouches for a different hash, raises TamperDetected naming both. So does
    a broken chain or a database that contradicts one of the trusted checkpoints
    given, before anything is signed.
    """
    if not stores:
        raise CheckpointConflict("no checkpoint location is configured")
    signed = await create_checkpoint(reader, ledger_id, signer, origin=origin, now=now,
                                     trusted=trusted, verified=verified)
    head = signed.checkpoint.head
    locations: list[str] = []
    new = False
    for store in stores:
        try:
            locations.append(await store.publish(ledger_id, head.sequence, signed.note()))
            new = True
        except CheckpointConflict:
            existing = await store.load(ledger_id, head.sequence)
            recorded = _vouched_hash(existing.note) if existing is not None else None
            if existing is None or recorded != head.hash:
                raise TamperDetected(
                    f"checkpoint #{head.sequence} at "
                    f"{existing.location if existing else 'a configured location'} records hash "
                    f"{recorded.hex() if recorded else '(unreadable)'} but the database has "
                    f"{head.hash.hex()} at that sequence") from None
            locations.append(existing.location)
    return PublishedCheckpoint(signed, tuple(locations), new)


def _vouched_hash(note: bytes) -> bytes | None:
    try:
        return parse_checkpoint(note).checkpoint.head_hash
    except CheckpointFormatError:
        return None


class CheckpointPublisher:
    """Publishes a checkpoint every every_events events or every_seconds, whichever is first.

    It runs beside the writer and reads the database head every poll_interval
    seconds; notice() (or the HeadStore from watching()) wakes it sooner once
    every_events have been acknowledged. Nothing is published while the head
    stands still. Failures are logged and retried at the next occasion; they
    never stop the writer.
    """

    def __init__(
        self, reader: EventReader, ledger_id: str, signer: CheckpointSigner,
        stores: Sequence[CheckpointStore], *, origin: str, every_events: int = 1000,
        every_seconds: float = 60.0, poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._ledger_id = ledger_id
        self._signer = signer
        self._stores = tuple(stores)
        self._origin = origin
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._poll_interval = min(poll_interval, every_seconds)
        self._clock = clock
        self._published = 0
        self._published_head: Head | None = None
        self._published_at = float("-inf")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    @property
    def published_sequence(self) -> int:
        """The sequence of the newest checkpoint known to be published (0 before any)."""
        return self._published

    @property
    def failures(self) -> int:
        """How often the publishing loop failed unexpectedly and was restarted."""
        return self._failures

    def notice(self, head: Head) -> None:
        """Tells the publisher of a newly acknowledged head."""
        if head.ledger_id == self._ledger_id and head.sequence - self._published >= self._every_events:
            self._wake.set()

    def watching(self, heads: HeadStore) -> HeadStore:
        """A HeadStore that saves to heads and tells this publisher of every head saved."""
        return _NoticingHeadStore(heads, self)

    async def load_published(self) -> None:
        """Learns the newest checkpoint already published, so a restart does not publish it again.

        Only checkpoints of this ledger that verify under the publisher's own key,
        filed under their own sequence, count: nothing anyone else puts there
        moves it.
        """
        own = [self._signer.trusted_key()]
        for store in self._stores:
            for stored in await store.list_checkpoints(self._ledger_id):
                head = _own_head(stored, self._ledger_id, own)
                if head is not None and head.sequence > self._published:
                    self._published, self._published_head = head.sequence, head

    async def publish_if_due(self) -> PublishedCheckpoint | None:
        """Publishes a checkpoint of the current head if enough events or time have passed."""
        head = await self._reader.head(self._ledger_id)
        moved = head.sequence - self._published
        now = self._clock()
        if moved <= 0:
            self._published_at = now
            return None
        if moved < self._every_events and now - self._published_at < self._every_seconds:
            return None
        # Recomputed from this publisher's own last checkpoint on, not from genesis.
        published = await publish_checkpoint(self._reader, self._ledger_id, self._signer,
                                              self._stores, origin=self._origin,
                                              verified=self._published_head)
        self._published_head = published.checkpoint.checkpoint.head
        self._published = self._published_head.sequence
        self._published_at = now
        logger.info("checkpoint published", ledger_id=self._ledger_id, sequence=self._published,
                    locations=list(published.locations), new=published.new)
        return published

    def start(self) -> None:
        """Starts publishing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="canonlog-checkpoints")

    async def stop(self, *, final: bool = True) -> None:
        """Stops publishing if started; with final, then covers every event written so far."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if final:
            self._published_at = float("-inf")
            await self._attempt()

    async def _attempt(self) -> bool:
        try:
            await self.publish_if_due()
        except TamperDetected as exc:
            logger.critical("checkpoint not published: the database differs from a published "
                            "checkpoint", ledger_id=self._ledger_id, error=str(exc))
        except (CanonlogError, OSError) as exc:
            logger.error("checkpoint not published; retrying later", ledger_id=self._ledger_id,
                         error=str(exc))
        else:
            return True
        return False

    async def _run(self) -> None:
        """Publishes until cancelled; an unexpected error is logged with its cause and the
        loop starts again after a pause, so publishing never stops silently."""
        while True:
            try:
                await self._publish_forever()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                logger.error("checkpoint publisher failed; restarting", ledger_id=self._ledger_id,
                             error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            await asyncio.sleep(max(_RETRY_WAIT, self._poll_interval))

    async def _publish_forever(self) -> None:
        try:
            await self.load_published()
        except (CanonlogError, OSError) as exc:
            logger.error("published checkpoints unreadable", ledger_id=self._ledger_id, error=str(exc))
        while True:
            if await self._attempt():
                due = self._published_at + self._every_seconds - self._clock()
                wait = min(max(due, _MIN_WAIT), self._poll_interval)
            else:
                wait = max(_RETRY_WAIT, self._poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()


def _own_head(stored: StoredCheckpoint, ledger_id: str, own: list[TrustedKey]) -> Head | None:
    """The head a stored checkpoint vouches for when it is one of the publisher's own."""
    if stored.unreadable is not None:
        return None
    try:
        signed = parse_checkpoint(stored.note)
    except CheckpointFormatError:
        return None
    head = signed.checkpoint.head
    if (head.ledger_id != ledger_id or head.sequence != stored.sequence
            or not verify_checkpoint(signed, own).trusted):
        return None
    return head


class _NoticingHeadStore:
    def __init__(self, inner: HeadStore, publisher: CheckpointPublisher) -> None:
        self._inner = inner
        self._publisher = publisher

    def load(self, ledger_id: str) -> Head | None:
        return self._inner.load(ledger_id)

    def save(self, head: Head) -> None:
        self._inner.save(head)
        self._publisher.notice(head)


# -- trusting ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedCheckpoint:
    location: str
    checkpoint: SignedCheckpoint
    verification: CheckpointVerification

    @property
    def head(self) -> Head:
        return self.checkpoint.checkpoint.head


@dataclass(frozen=True, slots=True)
class IgnoredCheckpoint:
    location: str
    reason: str


@dataclass(frozen=True, slots=True)
class CheckpointReview:
    """What the configured locations hold for a ledger: trusted checkpoints, newest first,
    the ones ignored, each with its reason, and the tamper evidence.

    ``forged`` are notes that name a trusted key whose signature does not verify:
    not noise but evidence that someone tampered with a checkpoint.
    """

    trusted: tuple[TrustedCheckpoint, ...]
    ignored: tuple[IgnoredCheckpoint, ...]
    forged: tuple[IgnoredCheckpoint, ...] = ()

    @property
    def newest(self) -> TrustedCheckpoint | None:
        return self.trusted[0] if self.trusted else None

    def heads(self) -> list[Head]:
        seen: dict[tuple[int, bytes], Head] = {}
        for item in self.trusted:
            seen.setdefault((item.head.sequence, item.head.hash), item.head)
        return list(seen.values())

    def tamper_evidence(self) -> list[str]:
        """One line per forged note: where it is and what fails."""
        return [f"checkpoint {item.location}: {item.reason}" for item in self.forged]


class SignedCheckpoints:
    """The TrustedCheckpoints of the configured stores and keys.

    A checkpoint is trusted when it parses, belongs to the ledger (and origin,
    when one is expected), is filed under its own sequence, carries a verifying
    signature by a trusted checkpoint key, no failing signature by a trusted key,
    and at least witnesses_required verifying witness cosignatures. Each
    cosignature kept beside a note is judged on its own: one that does not verify
    is ignored and never makes the note untrusted. A note whose own lines carry a
    failing signature by a trusted key is forged; every other checkpoint found is
    ignored; both are reported with their reason. Only the given stores are read.
    """

    def __init__(self, stores: Sequence[CheckpointStore], signers: Iterable[TrustedKey], *,
                 witnesses: Iterable[TrustedKey] = (), witnesses_required: int = 0,
                 origin: Callable[[str], str] | None = default_origin) -> None:
        self._stores = tuple(stores)
        self._signers = tuple(signers)
        self._witnesses = tuple(witnesses)
        self._witnesses_required = witnesses_required
        self._origin = origin

    async def review(self, ledger_id: str) -> CheckpointReview:
        """Reads every checkpoint of the ledger and sorts them into trusted, ignored and forged."""
        trusted: list[TrustedCheckpoint] = []
        ignored: list[IgnoredCheckpoint] = []
        forged: list[IgnoredCheckpoint] = []
        for store in self._stores:
            for stored in await store.list_checkpoints(ledger_id):
                if stored.unreadable is not None:
                    ignored.append(IgnoredCheckpoint(stored.location, stored.unreadable))
                    continue
                try:
                    signed = parse_checkpoint(stored.note)
                except CheckpointFormatError as exc:
                    ignored.append(IgnoredCheckpoint(stored.location, f"not a checkpoint note: {exc}"))
                    continue
                verification = verify_checkpoint(signed, self._signers, self._witnesses)
                if verification.failed:
                    forged.append(IgnoredCheckpoint(stored.location, str(verification.problem())))
                    continue
                verification = self._with_cosignatures(signed, stored, verification, ignored)
                reason = self._problem(ledger_id, stored.sequence, signed.checkpoint, verification)
                if reason is None:
                    trusted.append(TrustedCheckpoint(stored.location, signed, verification))
                else:
                    ignored.append(IgnoredCheckpoint(stored.location, reason))
        trusted.sort(key=lambda t: t.head.sequence, reverse=True)
        return CheckpointReview(tuple(trusted), tuple(ignored), tuple(forged))

    def _with_cosignatures(self, signed: SignedCheckpoint, stored: StoredCheckpoint,
                           verification: CheckpointVerification,
                           ignored: list[IgnoredCheckpoint]) -> CheckpointVerification:
        cosigned = dict(verification.cosigned_by)
        for cosignature in stored.cosignatures:
            if cosignature.unreadable is not None:
                ignored.append(IgnoredCheckpoint(cosignature.location, cosignature.unreadable))
                continue
            try:
                name, timestamp = verify_cosignature(signed, cosignature.content, self._witnesses)
            except CheckpointFormatError as exc:
                ignored.append(IgnoredCheckpoint(cosignature.location, str(exc)))
                continue
            cosigned.setdefault(name, timestamp)
        return replace(verification, cosigned_by=tuple(cosigned.items()))

    def _problem(self, ledger_id: str, filed_under: int | None, checkpoint: Checkpoint,
                 verification: CheckpointVerification) -> str | None:
        if checkpoint.ledger_id != ledger_id:
            return f"it is a checkpoint of ledger {checkpoint.ledger_id!r}, not {ledger_id!r}"
        expected = self._origin(ledger_id) if self._origin else None
        if expected is not None and checkpoint.origin != expected:
            return f"its origin {checkpoint.origin!r} is not the expected {expected!r}"
        if filed_under != checkpoint.sequence:
            return (f"it is filed under sequence {filed_under} but vouches for "
                    f"sequence {checkpoint.sequence}")
        problem = verification.problem()
        if problem is not None:
            return problem
        if len(verification.cosigned_by) < self._witnesses_required:
            return (f"it is cosigned by {len(verification.cosigned_by)} of the "
                    f"{self._witnesses_required} witnesses required")
        return None

    async def newest(self, ledger_id: str) -> Head | None:
        review = await self._logged_review(ledger_id)
        return review.newest.head if review.newest else None

    async def heads(self, ledger_id: str) -> list[Head]:
        return (await self._logged_review(ledger_id)).heads()

    async def tamper_evidence(self, ledger_id: str) -> list[str]:
        return (await self._logged_review(ledger_id)).tamper_evidence()

    async def _logged_review(self, ledger_id: str) -> CheckpointReview:
        review = await self.review(ledger_id)
        for item in review.ignored:
            logger.warning("checkpoint ignored", ledger_id=ledger_id, location=item.location,
                           reason=item.reason)
        for item in review.forged:
            logger.critical("checkpoint forged: a signature by a trusted key does not verify",
                            ledger_id=ledger_id, location=item.location, reason=item.reason)
        return review
