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
one ran: from genesis (everything recomputed), from the newest trusted
checkpoint the store still matches (the checkpoint vouches for what comes
before), from a head the caller vouches for itself (a witness's last cosigned
checkpoint), or over the last events only, linked to the store's own hash
before them (a writer's quick check of recent history at startup).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.application.verifier import (
    DEFAULT_PAGE_SIZE,
    ChainReport,
    SignaturePolicy,
    verify_chain,
)
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


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """A ledger verified: its chain, its store against trusted heads, and what was covered.

    ok only when the chain has no break and the store contradicts no trusted head.
    """

    chain: ChainReport
    checkpoints: CheckpointComparison
    coverage: Coverage

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.checkpoints.ok

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
    signatures: SignaturePolicy = "check",
    progress: ProgressCallback | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> VerificationReport:
    """Compares the store with every trusted head and recomputes the ledger's chain.

    Recomputation starts at genesis when from_genesis (the default); with
    from_genesis False, at the newest trusted head (at or below until) the store
    still matches, or at genesis when none does. Given anchor or tail, that choice
    is not made: with anchor it starts there, and the first event past it must
    link to anchor.hash; with tail it covers only the last tail events up to until
    (the store's head when None). Events past until are not recomputed. Raises
    ValueError when both anchor and tail are given; every problem found in the
    ledger is reported, not raised.
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
    chain = await verify_chain(reader, ledger_id, after=start, until=until, page_size=page_size,
                               signatures=signatures, progress=progress)
    return VerificationReport(chain, comparison,
                              Coverage(mode, start, chain.last_sequence, comparison.uncovered))


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
    heads = sorted({(h.sequence, h.hash): h for h in checkpoints
                    if h.sequence > 0}.values(), key=lambda h: h.sequence)
    matching: list[Head] = []
    found: list[tuple[str, Head, Head]] = []
    for checkpoint in heads:
        if checkpoint.sequence > database_head.sequence:
            found.append(("behind", checkpoint, database_head))
            continue
        rows = await reader.read_all(ledger_id, after=checkpoint.sequence - 1, limit=1)
        stored = rows[0].hash if rows and rows[0].sequence == checkpoint.sequence else b""
        if stored == checkpoint.hash:
            matching.append(checkpoint)
        else:
            found.append(("hash", checkpoint, Head(ledger_id, checkpoint.sequence, stored)))
    last = matching[-1].sequence if matching else 0
    mismatches = tuple(CheckpointMismatch(kind, cp, db, _mismatch_message(kind, cp, db, last))
                       for kind, cp, db in found)
    return CheckpointComparison(database_head, len(heads), heads[-1] if heads else None,
                                tuple(matching), mismatches)


def _mismatch_message(kind: str, checkpoint: Head, database: Head, last: int) -> str:
    tail = f"; the last checkpointed sequence that still matches is {last}"
    if kind == "behind":
        return (f"database head #{database.sequence} {database.hash.hex()} is behind checkpoint "
                f"#{checkpoint.sequence} {checkpoint.hash.hex()}: events were removed or an older "
                f"copy of the database was restored" + tail)
    return (f"hash at sequence {checkpoint.sequence} is {database.hash.hex() or '(missing)'} in "
            f"the database but {checkpoint.hash.hex()} in checkpoint #{checkpoint.sequence}: "
            f"the chain was rewritten or replaced" + tail)
