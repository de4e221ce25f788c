"""Independent verification of a ledger's hash chain.

The verifier trusts neither the writer nor the stored hashes: it recomputes
every hash from the event's fields (docs/reference/hash-spec.md) and checks
that sequences run 1..N without gaps, that each event links to the stored hash
of the one before, and that each stream's versions run 1..n. It keeps only the
previous hash and each stream's last version, so memory does not grow with the
number of events, and it reports progress as it goes.

This module checks a chain of events from a start to an end; which start a
verification may trust, and how the store compares with trusted checkpoints, is
the verification use case's (canonlog.application.verification.verify_ledger).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.domain.ceremony import HaltSeen, governance_event_problems
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
    SYSTEM_STREAM,
    SYSTEM_STREAM_PREFIX,
    Head,
    RecordedEvent,
    RegisteredKey,
)
from canonlog.domain.governance import (
    POLICY_CHANGED,
    POLICY_ESTABLISHED,
    GovernancePolicy,
    PolicyInForce,
    policy_from_document,
    policy_in_force_at,
)
from canonlog.domain.hashing import HashedFields, event_hash_v1
from canonlog.domain.signing import signable_content_v1, signature_is_valid

DEFAULT_PAGE_SIZE: Final = 5000

#: What the verifier does about agent signatures: "check" verifies every signature
#: present; "require" also reports events outside the ledger's own stream that are
#: unsigned; "ignore" skips signatures.
SignaturePolicy = Literal["ignore", "check", "require"]


class VerifiableEvent(HashedFields, Protocol):
    @property
    def hash_version(self) -> int: ...
    @property
    def hash(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One place where the ledger is not what its chain says.

    kind is one of: missing_sequence, unexpected_sequence, prev_hash_mismatch,
    hash_mismatch, unknown_hash_version, stream_version, ledger_mismatch,
    bad_signature, unsigned, bad_ceremony (a promotion or ceremony resume whose
    witness signatures do not hold), unwitnessed (a resume without the ceremony).
    """

    sequence: int
    kind: str
    message: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What checking a chain of events found: ok only when no break was found."""

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
    signatures: SignaturePolicy = "check"
    #: Keys registered before after_sequence, for verification that starts mid-chain.
    known_keys: dict[str, RegisteredKey] = field(default_factory=dict)
    #: The governance policies the chain established so far, by establishing sequence.
    policies: dict[int, GovernancePolicy] = field(default_factory=dict)
    #: The newest halt the chain recorded so far.
    last_halt: HaltSeen | None = None
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
        if self.signatures != "ignore":
            self._check_signature(event)
        if sequence > self._last_sequence:
            self._last_sequence = sequence
        self._last_hash = event.hash

    def _check_signature(self, event: VerifiableEvent) -> None:
        if event.stream_id == SYSTEM_STREAM:
            self._check_ceremony(event)
            self._learn_key(event)
            self._learn_governance(event, check=True)
            return
        key_id, signature = event.signing_key_id, event.signature
        if key_id is None or signature is None:
            if self.signatures == "require" and not event.stream_id.startswith(SYSTEM_STREAM_PREFIX):
                self._report(event.sequence, "unsigned", "event is not signed by an agent")
            return
        key = self.known_keys.get(key_id)
        problem = None
        if key is None or key.purpose != "agent":
            problem = f"signing key {key_id} is not a registered agent key"
        elif key.owner_id != event.agent_id:
            problem = f"signing key {key_id} belongs to {key.owner_id}, not {event.agent_id}"
        elif key.revoked_seq is not None and key.revoked_seq < event.sequence:
            problem = f"signing key {key_id} was revoked at sequence {key.revoked_seq}"
        elif event.agent_id is None or not signature_is_valid(key.public_key, signature,
                                                               _signable(event, event.agent_id)):
            problem = f"signature by key {key_id} does not verify"
        if problem is not None:
            self._report(event.sequence, "bad_signature", problem)

    def _check_ceremony(self, event: VerifiableEvent) -> None:
        """A promotion or a resume must carry enough valid witness signatures, by
        witness keys the chain registered before it."""
        if event.event_type == "canonlog.resumed" and b'"statement"' not in event.payload:
            self._report(event.sequence, "unwitnessed", "the ledger was resumed without the "
                         "witnessed resume ceremony")
            return
        if event.event_type not in ("canonlog.writer_promoted", "canonlog.resumed",
                                    POLICY_CHANGED):
            return
        in_force = policy_in_force_at(self.policies, event.sequence)
        for problem in governance_event_problems(event, self.known_keys, in_force,
                                                 self.last_halt):
            self._report(event.sequence, "bad_ceremony", problem)

    def _learn_governance(self, event: VerifiableEvent, *, check: bool) -> None:
        """Follows the policy and the halts along the chain; with check, reports a policy
        established twice and a witness key registered while a policy is in force."""
        if event.event_type == "canonlog.halted":
            self.last_halt = HaltSeen(event.sequence, event.hash, event.recorded_at)
            return
        if event.event_type not in (POLICY_ESTABLISHED, POLICY_CHANGED, "canonlog.key_added"):
            return
        try:
            data = json.loads(event.payload)
            if event.event_type == "canonlog.key_added":
                if check and data["purpose"] == "witness" and self.policies:
                    self._report(event.sequence, "bad_ceremony",
                                 f"witness key {data['key_id']} was registered at sequence "
                                 f"{event.sequence} outside a policy ceremony")
                return
            policy = policy_from_document(data["policy"])
        except (ValueError, KeyError, TypeError) as exc:
            if check:
                self._report(event.sequence, "bad_ceremony",
                             f"{event.event_type} at sequence {event.sequence} is malformed: "
                             f"{exc}")
            return
        if check and event.event_type == POLICY_ESTABLISHED and self.policies:
            self._report(event.sequence, "bad_ceremony",
                         f"a second policy was established at sequence {event.sequence}; a "
                         "policy changes only through a policy ceremony")
        self.policies[event.sequence] = policy

    def learn_keys_before_start(self, event: VerifiableEvent) -> None:
        """Learns the key an event before after_sequence registers or revokes, when the
        event is one of the ledger's own and its stored hash recomputes; checks nothing.

        A verification that starts mid-chain needs the keys registered before its start
        to check the signatures after it."""
        if (self.signatures != "ignore" and event.stream_id == SYSTEM_STREAM
                and event.sequence <= self.after_sequence and event_hash_v1(event) == event.hash):
            self._learn_key(event)
            self._learn_governance(event, check=False)

    def _learn_key(self, event: VerifiableEvent) -> None:
        if event.event_type not in ("canonlog.key_added", "canonlog.key_revoked"):
            return
        try:
            data = json.loads(event.payload)
            key_id = data["key_id"]
            if event.event_type == "canonlog.key_added":
                self.known_keys[key_id] = RegisteredKey(
                    event.ledger_id, key_id, data["purpose"], data["owner_id"],
                    bytes.fromhex(data["public_key"]), event.sequence)
            elif key_id in self.known_keys:
                old = self.known_keys[key_id]
                self.known_keys[key_id] = RegisteredKey(
                    old.ledger_id, old.key_id, old.purpose, old.owner_id, old.public_key,
                    old.added_seq, event.sequence)
        except (ValueError, KeyError, TypeError):
            self._report(event.sequence, "bad_signature",
                         f"{event.event_type} event does not describe a key")

    def compare_stored_policies(self, stored: Iterable[PolicyInForce], *,
                                to_head: bool = True) -> None:
        """Holds the policies the database enforces against those the chain established,
        after the start (to_head: up to any sequence; else up to the last one checked):
        a stored policy the chain does not record at its sequence (a forged row) is a
        break there."""
        low, high = self.after_sequence, self._last_sequence
        stored_at = {p.sequence: p.policy for p in stored}
        for sequence in sorted(set(stored_at) | set(self.policies)):
            if sequence <= low or (sequence > high and not to_head):
                continue
            chained, enforced = self.policies.get(sequence), stored_at.get(sequence)
            if enforced is not None and chained != enforced:
                self._report(sequence, "bad_ceremony",
                             f"the database enforces a governance policy established at sequence "
                             f"{sequence} that the chain does not record there")
            elif enforced is None and chained is not None:
                self._report(sequence, "bad_ceremony",
                             f"the chain establishes a governance policy at sequence {sequence} "
                             "that the database does not hold")

    def report(self) -> ChainReport:
        return ChainReport(
            ledger_id=self.ledger_id,
            events_checked=self._checked,
            first_sequence=self._first_sequence,
            last_sequence=self._last_sequence,
            head_hash=self._last_hash,
            breaks=tuple(self._breaks),
            breaks_total=self._breaks_total,
        )


def _signable(event: VerifiableEvent, agent_id: str) -> bytes:
    return signable_content_v1(
        ledger_id=event.ledger_id, event_id=event.event_id, stream_id=event.stream_id,
        event_type=event.event_type, payload=event.payload, metadata=event.metadata,
        task_id=event.task_id, execution_id=event.execution_id,
        correlation_id=event.correlation_id, causation_id=event.causation_id,
        agent_id=agent_id, signing_key_id=event.signing_key_id or "",
    )


def verify_events(
    events: Iterable[VerifiableEvent],
    ledger_id: str,
    *,
    after: Head | None = None,
    until: int | None = None,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> ChainReport:
    """Verifies events given in sequence order (an export), with no store.

    From the start of the ledger, every event is checked. Given after (a head
    the caller trusts), the events up to after.sequence only teach the keys they
    register, and the first event past it must link to after.hash; given until,
    events past it are left out.
    """
    verifier = _verifier(ledger_id, after, signatures)
    start = verifier.after_sequence
    count = 0
    for event in events:
        if start and event.sequence <= start:
            verifier.learn_keys_before_start(event)
            continue
        if until is not None and event.sequence > until:
            continue
        verifier.add(event)
        count += 1
        if progress is not None and count % progress_every == 0:
            progress(count)
    report = verifier.report()
    if progress is not None:
        progress(report.events_checked)
    return report


def _verifier(ledger_id: str, after: Head | None, signatures: SignaturePolicy) -> ChainVerifier:
    if after is None:
        return ChainVerifier(ledger_id, signatures=signatures)
    return ChainVerifier(ledger_id, after_sequence=after.sequence, after_hash=after.hash,
                         signatures=signatures)


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
    after: Head | None = None,
    until: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
) -> ChainReport:
    """Verifies a ledger's chain read page by page from a store, with nothing else trusted.

    From the start of the ledger unless given after (a head the caller trusts): the
    first event past it must then link to after.hash, and the keys registered before
    it are learnt from the ledger's own stream, each of those events checked against
    its own hash. verify_ledger is the verification use case built on this one.
    """
    verifier = _verifier(ledger_id, after, signatures)
    if verifier.after_sequence > 0 and signatures != "ignore":
        for event in await reader.read_stream(ledger_id, SYSTEM_STREAM):
            if event.sequence > verifier.after_sequence:
                break
            verifier.learn_keys_before_start(event)
    checked = 0
    async for page in _pages(reader, ledger_id, verifier.after_sequence, until, page_size):
        for event in page:
            verifier.add(event)
        checked += len(page)
        if progress is not None:
            progress(checked)
    if signatures != "ignore":
        verifier.compare_stored_policies(await reader.policies(ledger_id),
                                         to_head=until is None)
    return verifier.report()
