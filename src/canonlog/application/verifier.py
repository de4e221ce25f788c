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

import json
from dataclasses import dataclass, field
from typing import Literal, Protocol

from canonlog.domain.ceremony import HaltSeen, governance_event_problems
from canonlog.domain.events import (
    GENESIS_HASH,
    HASH_VERSION,
    SYSTEM_STREAM,
    SYSTEM_STREAM_PREFIX,
    RegisteredKey,
)
from canonlog.domain.governance import (
    POLICY_CHANGED,
    POLICY_ESTABLISHED,
    GovernancePolicy,
    policy_from_document,
    policy_in_force_at,
)
from canonlog.domain.hashing import HashedFields, event_hash_v1
from canonlog.domain.signing import signable_content_v1, signature_is_valid

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
    #: Checks a range alone: its first event's link and sequence are left to whoever
    #: joins the ranges, and a stream's first version in it is recorded, not checked.
    detached: bool = False
    #: Whether the ledger's own events are checked as governance (ceremonies against the
    #: policy); without, they only teach the keys the agents' signatures need.
    governance: bool = True
    _last_sequence: int = field(init=False)
    _last_hash: bytes = field(init=False)
    _first_sequence: int | None = field(init=False, default=None)
    _checked: int = field(init=False, default=0)
    _streams: dict[str, int] = field(init=False, default_factory=dict)
    _breaks: list[ChainBreak] = field(init=False, default_factory=list)
    _breaks_total: int = field(init=False, default=0)
    #: Detached: each stream's first (sequence, version, event number) in the range.
    stream_first: dict[str, tuple[int, int, int]] = field(init=False, default_factory=dict)
    #: The number (1, 2, ...) of the event being checked when each kept break was found.
    break_positions: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._last_sequence = self.after_sequence
        self._last_hash = self.after_hash

    def report_break(self, sequence: int, kind: str, message: str,
                     expected: str | None = None, found: str | None = None) -> None:
        """Counts a break, and keeps it while fewer than max_reported are kept."""
        self._breaks_total += 1
        if len(self._breaks) < self.max_reported:
            self._breaks.append(ChainBreak(sequence, kind, message, expected, found))
            self.break_positions.append(self._checked)

    def add(self, event: VerifiableEvent) -> None:
        """Checks one event against the chain so far."""
        sequence = event.sequence
        if self._first_sequence is None:
            self._first_sequence = sequence
            if self.detached:
                self._last_sequence, self._last_hash = sequence - 1, event.prev_hash
        self._checked += 1
        if event.ledger_id != self.ledger_id:
            self.report_break(sequence, "ledger_mismatch",
                              f"event belongs to ledger {event.ledger_id!r}, not "
                              f"{self.ledger_id!r}", self.ledger_id, event.ledger_id)
        self._check_link(sequence, event.prev_hash, event.hash_version)
        if event.hash_version != HASH_VERSION:
            self.report_break(sequence, "unknown_hash_version",
                              f"hash version {event.hash_version} is not known to this verifier",
                              str(HASH_VERSION), str(event.hash_version))
        else:
            computed = event_hash_v1(event)
            if computed != event.hash:
                self.report_break(sequence, "hash_mismatch",
                                  "stored hash does not match the hash recomputed from the event",
                                  computed.hex(), event.hash.hex())
        stream_id = event.stream_id
        if self.detached and stream_id not in self._streams:
            self.stream_first[stream_id] = (sequence, event.stream_version, self._checked)
        else:
            self._check_stream(sequence, stream_id, event.stream_version)
        self._streams[stream_id] = event.stream_version
        if self.signatures != "ignore":
            self._check_signature(event)
        if sequence > self._last_sequence:
            self._last_sequence = sequence
        self._last_hash = event.hash

    def _check_link(self, sequence: int, prev_hash: bytes, hash_version: int) -> None:
        """The event at sequence follows the last one checked, and links to its hash."""
        expected_sequence = self._last_sequence + 1
        if sequence > expected_sequence:
            missing = (str(expected_sequence) if sequence == expected_sequence + 1
                       else f"{expected_sequence}..{sequence - 1}")
            self.report_break(expected_sequence, "missing_sequence",
                              f"sequence {missing} is missing: {sequence} follows "
                              f"{self._last_sequence}", str(expected_sequence), str(sequence))
        elif sequence < expected_sequence:
            self.report_break(sequence, "unexpected_sequence",
                              f"sequence {sequence} appears after {self._last_sequence}",
                              str(expected_sequence), str(sequence))
        if hash_version == HASH_VERSION and prev_hash != self._last_hash:
            self.report_break(sequence, "prev_hash_mismatch",
                              f"previous hash does not match the hash of sequence "
                              f"{self._last_sequence}", self._last_hash.hex(), prev_hash.hex())

    def _check_stream(self, sequence: int, stream_id: str, version: int) -> None:
        """The stream's version at sequence follows its last one (from genesis: from 0)."""
        last_version = self._streams.get(stream_id)
        if last_version is None and self.after_sequence == 0:
            last_version = 0
        if last_version is not None and version != last_version + 1:
            self.report_break(sequence, "stream_version",
                              f"stream {stream_id!r} goes from version {last_version} "
                              f"to {version}", str(last_version + 1), str(version))

    def _check_signature(self, event: VerifiableEvent) -> None:
        if event.stream_id == SYSTEM_STREAM:
            if self.governance:
                self.check_governance(event)
            else:
                self._learn_key(event, quiet=True)
            return
        key_id, signature = event.signing_key_id, event.signature
        if key_id is None or signature is None:
            if self.signatures == "require" and not event.stream_id.startswith(SYSTEM_STREAM_PREFIX):
                self.report_break(event.sequence, "unsigned", "event is not signed by an agent")
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
            self.report_break(event.sequence, "bad_signature", problem)

    def check_governance(self, event: VerifiableEvent) -> None:
        """Checks one of the ledger's own events against the policy in force and learns
        the keys, policy and halt it records."""
        self._check_ceremony(event)
        self._learn_key(event)
        self._learn_governance(event, check=True)

    def reached(self, sequence: int, head_hash: bytes) -> None:
        """Records that the chain was checked up to sequence (whose hash is head_hash)
        elsewhere: a governance replay stands for the whole range."""
        self._last_sequence, self._last_hash = sequence, head_hash

    @property
    def report_position(self) -> int:
        """The number (1, 2, ...) of the last event checked."""
        return self._checked

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    @property
    def streams(self) -> dict[str, int]:
        """Each stream's last version checked."""
        return self._streams

    def _check_ceremony(self, event: VerifiableEvent) -> None:
        """A promotion or a resume must carry enough valid witness signatures, by
        witness keys the chain registered before it."""
        if event.event_type == "canonlog.resumed" and b'"statement"' not in event.payload:
            self.report_break(event.sequence, "unwitnessed", "the ledger was resumed without the "
                         "witnessed resume ceremony")
            return
        if event.event_type not in ("canonlog.writer_promoted", "canonlog.resumed",
                                    POLICY_CHANGED):
            return
        in_force = policy_in_force_at(self.policies, event.sequence)
        for problem in governance_event_problems(event, self.known_keys, in_force,
                                                 self.last_halt):
            self.report_break(event.sequence, "bad_ceremony", problem)

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
                    self.report_break(event.sequence, "bad_ceremony",
                                 f"witness key {data['key_id']} was registered at sequence "
                                 f"{event.sequence} outside a policy ceremony")
                return
            policy = policy_from_document(data["policy"])
        except (ValueError, KeyError, TypeError) as exc:
            if check:
                self.report_break(event.sequence, "bad_ceremony",
                             f"{event.event_type} at sequence {event.sequence} is malformed: "
                             f"{exc}")
            return
        if check and event.event_type == POLICY_ESTABLISHED and self.policies:
            self.report_break(event.sequence, "bad_ceremony",
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

    def learn_key_quietly(self, event: VerifiableEvent) -> None:
        """Learns the key an event registers or revokes, reporting nothing."""
        self._learn_key(event, quiet=True)

    def _learn_key(self, event: VerifiableEvent, *, quiet: bool = False) -> None:
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
            if not quiet:
                self.report_break(event.sequence, "bad_signature",
                                  f"{event.event_type} event does not describe a key")

    def join(self, first_sequence: int, first_prev_hash: bytes, first_hash_version: int) -> None:
        """Checks the first event of a range checked alone (detached) against the chain so
        far: its sequence and its link, as add would."""
        self._check_link(first_sequence, first_prev_hash, first_hash_version)

    def join_stream(self, sequence: int, stream_id: str, version: int) -> None:
        """Checks a stream's first version in a range checked alone against its last one."""
        self._check_stream(sequence, stream_id, version)

    def joined(self, stream_last: dict[str, int], last_sequence: int, last_hash: bytes) -> None:
        """Continues the chain past a range checked alone and joined."""
        self._streams.update(stream_last)
        self._last_sequence = max(self._last_sequence, last_sequence)
        self._last_hash = last_hash

    def clear_breaks(self) -> None:
        """Forgets the breaks found so far (their caller has taken them)."""
        self._breaks, self._breaks_total, self.break_positions = [], 0, []

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
