"""Verifying a ledger in its store: the chain recomputed, the store held to trusted heads.

This is the one verification use case: `canonlog verify`, a writer's startup
self-verification and a checkpoint witness all call verify_ledger, and so does
any later entry point. A verification does two things and reports what each
covered:

- it compares the store with every trusted head given (signed checkpoints kept
  outside the database): a store behind a checkpoint (tail cut off, an older copy
  restored) or with another hash at a checkpointed sequence (history rewritten)
  is a mismatch, which the chain alone could not reveal;
- it recomputes the hash chain (canonlog.application.verifier) from a start to
  the end, naming every break.

Where the recomputation starts is the caller's choice, and the report says which
one ran and which range it did not recompute: from genesis (everything
recomputed, the default), from the newest trusted checkpoint the store still
matches (incremental, asked for by name: the rows before it are not re-read, so
an edit or a deletion there goes unseen), from a head the caller vouches for
itself (a witness's last cosigned checkpoint), or over the last events only,
linked to the store's own hash before them (a writer's quick check of recent
history at startup).

A verification is only as strong as its evidence. A checkpoint note that names a
trusted key but whose signature does not verify is tamper evidence and fails it;
with no trusted checkpoint at all, a rewrite with recomputed hashes, a cut-off
tail or a restored older copy cannot be detected, which the report says and which
fails it when checkpoints are required. An export is verified the same way
(verify_exported), its last line standing for the store's head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from canonlog.application.chain_verification import DEFAULT_PAGE_SIZE, verify_chain, verify_events
from canonlog.application.ports import ChainChecker, EventReader, ProgressCallback
from canonlog.application.verifier import ChainReport, SignaturePolicy, VerifiableEvent
from canonlog.domain.events import GENESIS_HASH, Head

#: Where a verification started recomputing hashes; see Coverage.
CoverageMode = Literal["genesis", "checkpoint", "anchor", "tail"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which events a verification recomputed, and what vouches for the others.

    Hashes were recomputed from start.sequence + 1 to end, the first of them linked
    to start.hash. What covers the events up to start.sequence depends on mode:
    "genesis": there are none, every hash was recomputed; "checkpoint": start is
    the newest trusted checkpoint the store still matches, which vouches for them;
    "anchor": start is a head the caller vouched for itself; "tail": start is the
    store's own hash before the last events, and nothing but the checkpoint
    comparison vouches for what precedes it. ``uncovered`` events come after the
    newest trusted checkpoint: no checkpoint vouches for them yet.
    """

    mode: CoverageMode
    start: Head
    end: int
    uncovered: int

    @property
    def recomputed(self) -> int:
        """How many sequences had their hash recomputed."""
        return max(0, self.end - self.start.sequence)

    def not_recomputed(self) -> str | None:
        """The range whose hashes were not recomputed and what stands for it, or None."""
        if self.mode == "genesis" or self.start.sequence == 0:
            return None
        since = f"sequences 1..{self.start.sequence} were not recomputed"
        if self.mode == "checkpoint":
            return (f"{since}: checkpoint #{self.start.sequence} vouches only for the hash "
                    f"stored there, so an edit or a deletion before it is not detected")
        if self.mode == "anchor":
            return f"{since}: the caller vouched for #{self.start.sequence} itself"
        return (f"{since}: only the last {self.recomputed} events were recomputed, linked to "
                f"the store's own hash at #{self.start.sequence}")

    def policy_not_checked(self) -> str | None:
        """What of the governance policy a verification that starts mid-chain could not
        check, or None when it replayed the policy from genesis."""
        if self.mode == "genesis" or self.start.sequence == 0:
            return None
        return (f"the governance policy was not checked up to #{self.start.sequence}: the "
                f"policy, keys and halt in force there were read from the ledger's own events "
                f"before it, each against its own hash but not linked to a trusted checkpoint, "
                f"and the ceremonies and key changes before it were not replayed")


#: What a verification without a trusted checkpoint cannot see.
UNPROTECTED = ("no trusted checkpoint: a rewrite with recomputed hashes, a cut-off tail or a "
               "restored older copy cannot be detected")


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """A ledger verified: its chain, its store against trusted heads, and what was covered.

    ok only when the chain has no break, the store contradicts no trusted head, no
    tamper evidence was given, and, when checkpoints are required, at least one
    trusted checkpoint was compared.
    """

    chain: ChainReport
    checkpoints: CheckpointComparison
    coverage: Coverage
    #: Reasons of the checkpoint notes that name a trusted key whose signature fails.
    tamper_evidence: tuple[str, ...] = ()
    checkpoints_required: bool = False

    @property
    def unprotected(self) -> bool:
        """True when no trusted checkpoint was compared: rewrites and rollbacks go unseen."""
        return self.checkpoints.checked == 0

    @property
    def ok(self) -> bool:
        return (self.chain.ok and self.checkpoints.ok and not self.tamper_evidence
                and not (self.checkpoints_required and self.unprotected))

    def problems(self) -> list[str]:
        """Why the verification failed, beyond the chain's breaks: one line each."""
        found = [m.message for m in self.checkpoints.mismatches]
        found += [f"tamper evidence: {reason}" for reason in self.tamper_evidence]
        if self.checkpoints_required and self.unprotected:
            found.append(f"checkpoints are required but none is trusted; {UNPROTECTED}")
        return found

    @property
    def ledger_id(self) -> str:
        return self.chain.ledger_id


async def verify_ledger(
    reader: EventReader,
    ledger_id: str,
    *,
    trusted: Iterable[Head] = (),
    from_genesis: bool = True,
    anchor: Head | None = None,
    tail: int | None = None,
    until: int | None = None,
    tamper_evidence: Sequence[str] = (),
    require_checkpoints: bool = False,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    checker: ChainChecker | None = None,
) -> VerificationReport:
    """Compares the store with every trusted head and recomputes the ledger's chain.

    Recomputation starts at genesis when from_genesis (the default); with
    from_genesis False, at the newest trusted head (at or below until) the store
    still matches, or at genesis when none does. Given anchor or tail, that choice
    is not made: with anchor it starts there, and the first event past it must
    link to anchor.hash; with tail it covers only the last tail events up to until
    (the store's head when None). Events past until are not recomputed. Raises
    ValueError when both anchor and tail are given; every problem found in the
    ledger is reported, not raised. tamper_evidence and require_checkpoints are
    carried into the report's verdict (see VerificationReport.ok). Given checker, the
    chain is recomputed by it (in parallel processes, say) rather than in this one.
    """
    if anchor is not None and tail is not None:
        raise ValueError("verify_ledger takes an anchor or a tail, not both")
    comparison = await check_against_checkpoints(reader, ledger_id, trusted)
    mode: CoverageMode
    start = Head(ledger_id, 0, GENESIS_HASH)
    if anchor is not None:
        mode, start = "anchor", anchor
    elif tail is not None:
        head = comparison.database_head.sequence
        until = head if until is None else min(until, head)
        mode, start = "tail", await _stored_head(reader, ledger_id, max(0, until - tail))
    else:
        matching = [] if from_genesis else [h for h in comparison.matching
                                            if until is None or h.sequence <= until]
        mode, start = ("checkpoint", matching[-1]) if matching else ("genesis", start)
    if start.sequence == 0:
        mode = "genesis"
    if checker is not None:
        chain = await checker.verify_chain(reader, ledger_id, after=start, until=until,
                                           signatures=signatures, progress=progress)
    else:
        chain = await verify_chain(reader, ledger_id, after=start, until=until,
                                   page_size=page_size, signatures=signatures, progress=progress)
    return VerificationReport(chain, comparison,
                              Coverage(mode, start, chain.last_sequence, comparison.uncovered),
                              tuple(tamper_evidence), require_checkpoints)


def verify_exported(
    events: Iterable[VerifiableEvent],
    ledger_id: str,
    *,
    trusted: Iterable[Head] = (),
    tamper_evidence: Sequence[str] = (),
    require_checkpoints: bool = False,
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """verify_ledger for an export: every hash recomputed from genesis, every trusted head
    compared with the export's hash at its sequence, the last event standing for the head.

    An export cut short is "behind" a later checkpoint; a rewritten one differs at a
    checkpointed sequence.
    """
    heads = _sorted_heads(trusted)
    wanted = {h.sequence for h in heads}
    seen: dict[int, bytes] = {}

    def watched() -> Iterator[VerifiableEvent]:
        for event in events:
            if event.sequence in wanted:
                seen[event.sequence] = event.hash
            yield event

    chain = verify_events(watched(), ledger_id, signatures=signatures, progress=progress)
    return exported_verdict(chain, seen, trusted=heads, tamper_evidence=tamper_evidence,
                            require_checkpoints=require_checkpoints)


def exported_verdict(chain: ChainReport, hashes: dict[int, bytes], *,
                     trusted: Iterable[Head] = (), tamper_evidence: Sequence[str] = (),
                     require_checkpoints: bool = False) -> VerificationReport:
    """verify_exported's verdict on a chain recomputed elsewhere from genesis, given the
    export's hash at each trusted head's sequence it holds (checkpoint_sequences)."""
    ledger_id = chain.ledger_id
    heads = _sorted_heads(trusted)
    head = Head(ledger_id, chain.last_sequence, chain.head_hash)
    comparison = _compare(head, heads, hashes, "export")
    return VerificationReport(chain, comparison,
                              Coverage("genesis", Head(ledger_id, 0, GENESIS_HASH),
                                       chain.last_sequence, comparison.uncovered),
                              tuple(tamper_evidence), require_checkpoints)


def checkpoint_sequences(trusted: Iterable[Head]) -> frozenset[int]:
    """The sequences at which an export's hashes are compared with trusted heads."""
    return frozenset(h.sequence for h in _sorted_heads(trusted))


async def _stored_head(reader: EventReader, ledger_id: str, sequence: int) -> Head:
    """The store's own (sequence, hash) at sequence, trusted for nothing but a start."""
    if sequence == 0:
        return Head(ledger_id, 0, GENESIS_HASH)
    (event,) = await reader.read_all(ledger_id, after=sequence - 1, limit=1)
    return Head(ledger_id, event.sequence, event.hash)


# -- the store against trusted heads ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointMismatch:
    """A trusted checkpoint the database contradicts.

    kind is "behind" (the database has no event at the checkpoint's sequence) or
    "hash" (the event there has another hash); database is the database's head
    for "behind" and its event at the checkpoint's sequence for "hash".
    """

    kind: str
    checkpoint: Head
    database: Head
    message: str


@dataclass(frozen=True, slots=True)
class CheckpointComparison:
    """The database held against every trusted checkpoint of one ledger."""

    database_head: Head
    checked: int
    newest: Head | None
    #: The checkpoints the database still agrees with, oldest first.
    matching: tuple[Head, ...]
    mismatches: tuple[CheckpointMismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def last_matching(self) -> Head | None:
        """The newest checkpoint the database still agrees with: where an incremental check starts."""
        return self.matching[-1] if self.matching else None

    @property
    def uncovered(self) -> int:
        """Events after the newest checkpoint, which no checkpoint vouches for yet."""
        newest = self.newest.sequence if self.newest else 0
        return max(0, self.database_head.sequence - newest)


async def check_against_checkpoints(reader: EventReader, ledger_id: str,
                                    checkpoints: Iterable[Head]) -> CheckpointComparison:
    """Compares the database with every trusted checkpoint of the ledger.

    A database head behind a checkpoint (tail cut off, older copy restored) or a
    hash that differs at a checkpointed sequence (chain rewritten) is a mismatch;
    its message names the database's and the checkpoint's sequence and hash, and
    the last checkpointed sequence that still matches (0 when none does).
    """
    database_head = await reader.head(ledger_id)
    heads = _sorted_heads(checkpoints)
    stored: dict[int, bytes] = {}
    for checkpoint in heads:
        if checkpoint.sequence <= database_head.sequence:
            rows = await reader.read_all(ledger_id, after=checkpoint.sequence - 1, limit=1)
            if rows and rows[0].sequence == checkpoint.sequence:
                stored[checkpoint.sequence] = rows[0].hash
    return _compare(database_head, heads, stored, "database")


def _sorted_heads(checkpoints: Iterable[Head]) -> list[Head]:
    return sorted({(h.sequence, h.hash): h for h in checkpoints if h.sequence > 0}.values(),
                  key=lambda h: h.sequence)


def _compare(head: Head, heads: list[Head], stored: dict[int, bytes],
             source: str) -> CheckpointComparison:
    """The comparison of a store (its head, its hash at each checkpointed sequence) with heads."""
    matching: list[Head] = []
    found: list[tuple[str, Head, Head]] = []
    for checkpoint in heads:
        if checkpoint.sequence > head.sequence:
            found.append(("behind", checkpoint, head))
        elif stored.get(checkpoint.sequence) == checkpoint.hash:
            matching.append(checkpoint)
        else:
            found.append(("hash", checkpoint, Head(head.ledger_id, checkpoint.sequence,
                                                   stored.get(checkpoint.sequence, b""))))
    last = matching[-1].sequence if matching else 0
    mismatches = tuple(CheckpointMismatch(kind, cp, db, _mismatch_message(kind, cp, db, last,
                                                                          source))
                       for kind, cp, db in found)
    return CheckpointComparison(head, len(heads), heads[-1] if heads else None,
                                tuple(matching), mismatches)


def _mismatch_message(kind: str, checkpoint: Head, database: Head, last: int,
                      source: str) -> str:
    tail = f"; the last checkpointed sequence that still matches is {last}"
    if kind == "behind":
        why = ("events were removed or an older copy of the database was restored"
               if source == "database" else f"the {source} was cut short or taken earlier")
        return (f"{source} head #{database.sequence} {database.hash.hex()} is behind checkpoint "
                f"#{checkpoint.sequence} {checkpoint.hash.hex()}: {why}" + tail)
    return (f"hash at sequence {checkpoint.sequence} is {database.hash.hex() or '(missing)'} in "
            f"the {source} but {checkpoint.hash.hex()} in checkpoint #{checkpoint.sequence}: "
            f"the chain was rewritten or replaced" + tail)
