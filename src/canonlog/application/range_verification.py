"""Verifying a chain in ranges, each on its own, and joining them into one report.

Each event stores the hash of the one before it, so a range of the ledger can be
recomputed alone: every hash, every link inside the range, every stream's
versions after its first appearance there, every agent signature. What a range
cannot see on its own is checked when the ranges are joined, in sequence order:
that its first event follows the previous range's last (sequence and hash), and
that each stream's first version in it follows the stream's last version before.
The ledger's own events (keys, policy, ceremonies) are few: each range learns the
keys registered before it from them, and the join replays the governance policy
over them once, as a single verifier would.

Joined, the report is the one a single verifier gives over the same events: the
same breaks at the same sequences, the first break first. Dividing the work
among processes, and reading the rows, belongs to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from canonlog.application.verifier import (
    ChainBreak,
    ChainReport,
    ChainVerifier,
    SignaturePolicy,
    VerifiableEvent,
)
from canonlog.domain.events import HASH_VERSION, SYSTEM_STREAM, Head

#: Where a break sorts among the breaks of one sequence: the order a single verifier
#: checks an event in.
_CHECK_ORDER: Final = {"ledger_mismatch": 0, "missing_sequence": 1, "unexpected_sequence": 1,
                       "unknown_hash_version": 2, "prev_hash_mismatch": 3, "hash_mismatch": 4,
                       "stream_version": 5}


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What checking one range alone found, and what the join needs from it."""

    checked: int
    first_sequence: int | None = None
    first_prev_hash: bytes = b""
    first_hash_version: int = HASH_VERSION
    last_sequence: int = 0
    last_hash: bytes = b""
    breaks: tuple[ChainBreak, ...] = ()
    breaks_total: int = 0
    #: The number (1, 2, ...) in the range of the event each kept break was found at.
    break_positions: tuple[int, ...] = ()
    #: Each stream's first (sequence, version, event number) in the range, and its last
    #: version.
    stream_first: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    stream_last: dict[str, int] = field(default_factory=dict)
    #: The ledger's own events in the range, for the governance replay, with their numbers.
    system_events: tuple[VerifiableEvent, ...] = ()
    system_positions: tuple[int, ...] = ()
    #: The stored hash at each watched sequence the range holds.
    watched: dict[int, bytes] = field(default_factory=dict)


def check_range(events: Iterable[VerifiableEvent], ledger_id: str, *, start: Head,
                before: Sequence[VerifiableEvent], signatures: SignaturePolicy = "check",
                watch: frozenset[int] = frozenset(), until: int | None = None) -> RangeResult:
    """Checks a range of events alone.

    start is where the whole verification starts (events at or below it are
    skipped, and the ledger's own events at or below it teach their keys only when
    their hash recomputes); before holds the ledger's own events that precede the
    range, which teach the keys they register. Events past until are skipped.
    """
    verifier = ChainVerifier(ledger_id, after_sequence=start.sequence, after_hash=start.hash,
                             signatures=signatures, detached=True, governance=False)
    for event in before:
        if event.sequence <= start.sequence:
            verifier.learn_keys_before_start(event)
        elif signatures != "ignore":
            verifier.learn_key_quietly(event)
    add, low = verifier.add, start.sequence
    system: list[VerifiableEvent] = []
    positions: list[int] = []
    watched: dict[int, bytes] = {}
    first: VerifiableEvent | None = None
    for event in events:
        sequence = event.sequence
        if (low and sequence <= low) or (until is not None and sequence > until):
            continue
        add(event)
        if first is None:
            first = event
        if event.stream_id == SYSTEM_STREAM:
            system.append(event)
            positions.append(verifier.report_position)
        if sequence in watch:
            watched[sequence] = event.hash
    report = verifier.report()
    if first is None:
        return RangeResult(0)
    return RangeResult(report.events_checked, first.sequence, first.prev_hash,
                       first.hash_version, report.last_sequence, report.head_hash,
                       report.breaks, report.breaks_total, tuple(verifier.break_positions),
                       verifier.stream_first, verifier.streams, tuple(system),
                       tuple(positions), watched)


def join_ranges(results: Sequence[RangeResult], ledger_id: str, *, start: Head,
                before: Sequence[VerifiableEvent] = (),
                signatures: SignaturePolicy = "check") -> tuple[ChainReport, ChainVerifier]:
    """Joins ranges checked alone, given in sequence order, into one chain report.

    Checks each range's first event against the previous range's last, and each
    stream's first version in a range against its last before; replays the
    governance policy over the ledger's own events (before: those at or below start,
    which teach what they record). The breaks come in the order one pass finds them.
    Returns the report and the governance verifier, on which the store's policies and
    keys can still be compared (with_later_breaks then adds what that found).
    """
    joiner = ChainVerifier(ledger_id, after_sequence=start.sequence, after_hash=start.hash,
                           signatures=signatures)
    governance = ChainVerifier(ledger_id, after_sequence=start.sequence, after_hash=start.hash,
                               signatures=signatures)
    for event in before:
        governance.learn_keys_before_start(event)
    found: list[tuple[tuple[int, int, int], ChainBreak]] = []
    total = checked = 0
    first_sequence: int | None = None

    def take(verifier: ChainVerifier, since: int, where: tuple[int, int]) -> None:
        if len(verifier.break_positions) > since:
            for found_break in verifier.report().breaks[since:]:
                found.append(((*where, _CHECK_ORDER.get(found_break.kind, 6)), found_break))

    for index, result in enumerate(results):
        if not result.checked or result.first_sequence is None:
            continue
        if first_sequence is None:
            first_sequence = result.first_sequence
        found += [((index, at, _CHECK_ORDER.get(b.kind, 6)), b)
                  for b, at in zip(result.breaks, result.break_positions, strict=True)]
        kept = len(joiner.break_positions)
        joiner.join(result.first_sequence, result.first_prev_hash, result.first_hash_version)
        take(joiner, kept, (index, 1))
        for stream_id, (sequence, version, at) in result.stream_first.items():
            kept = len(joiner.break_positions)
            joiner.join_stream(sequence, stream_id, version)
            take(joiner, kept, (index, at))
        joiner.joined(result.stream_last, result.last_sequence, result.last_hash)
        if signatures != "ignore":
            for event, at in zip(result.system_events, result.system_positions, strict=True):
                kept = len(governance.break_positions)
                governance.check_governance(event)
                take(governance, kept, (index, at))
        total += result.breaks_total
        checked += result.checked
    joined, replayed = joiner.report(), governance.report()
    found.sort(key=lambda item: item[0])
    breaks = tuple(b for _, b in found[:joiner.max_reported])
    total += joined.breaks_total + replayed.breaks_total
    report = ChainReport(ledger_id, checked, first_sequence, joined.last_sequence,
                         joined.head_hash, breaks, total)
    governance.reached(joined.last_sequence, joined.head_hash)
    governance.clear_breaks()
    return report, governance


def with_later_breaks(report: ChainReport, later: ChainVerifier) -> ChainReport:
    """The report with the breaks later found on a verifier (the store held against the
    chain) after its own, as a single verifier reports them."""
    extra = later.report()
    breaks = (report.breaks + extra.breaks)[:later.max_reported]
    return ChainReport(report.ledger_id, report.events_checked, report.first_sequence,
                       report.last_sequence, report.head_hash, breaks,
                       report.breaks_total + extra.breaks_total)
