"""Reconciliation: proving a destination holds the chain, and finding where it does not.

The chain and the destination are compared chunk by chunk, each chunk by the
count and digest of its (sequence, hash) pairs (domain.relay.range_digest). A
chunk whose digests differ is halved, and halved again, until a range is small
enough to compare row by row. Equal digests need one small answer from the
destination, so a complete store costs one digest per chunk.

Up to the consumer's cursor every event must be there, except its dead letters;
past the cursor events may still be pending, so only altered rows count there;
anything the destination holds beyond the chain's head is extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from canonlog.application.idempotency import IdempotencyService
from canonlog.application.ports import EventReader, ReconcilableDestination, RelayStore
from canonlog.domain.relay import ReconciliationReport, range_digest

log = structlog.get_logger(__name__)

#: The largest sequence a destination could hold; the end of the "beyond the head" range.
_LAST_POSSIBLE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """Events read from the chain at a time, and the range size compared row by row."""

    chunk: int = 4096
    leaf: int = 64


@dataclass(slots=True)
class _Findings:
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    altered: list[int] = field(default_factory=list)


async def reconcile(name: str, reader: EventReader, store: RelayStore,
                    destination: ReconcilableDestination, *, redeliver: bool = True,
                    idempotency: IdempotencyService | None = None,
                    config: ReconcileConfig | None = None) -> ReconciliationReport:
    """Compares the consumer's destination with the chain up to the head and returns
    what differs; with redeliver, delivers the missing events again (the destination
    keys them by sequence). With an IdempotencyService, also deletes its expired
    records. Raises ConsumerNotFound for an unknown consumer."""
    config = config or ReconcileConfig()
    state = await store.consumer(name)
    head = (await reader.head(state.ledger_id)).sequence
    dead = {f.sequence for f in await store.failures(name, dead_letters_only=True,
                                                     limit=1_000_000)}
    findings = _Findings()
    after = 0
    while after < head:
        events = await reader.read_all(state.ledger_id, after=after,
                                       limit=min(config.chunk, head - after))
        if not events:
            break
        chain = {e.sequence: e.hash for e in events}
        await _compare(destination, state.ledger_id, chain, after + 1, events[-1].sequence,
                       state.cursor_seq, dead, config.leaf, findings)
        after = events[-1].sequence
    beyond = await destination.entries(state.ledger_id, head + 1, _LAST_POSSIBLE) \
        if (await destination.digest(state.ledger_id, head + 1, _LAST_POSSIBLE)).count else {}
    findings.extra.extend(sorted(beyond))
    redelivered = 0
    if redeliver and findings.missing:
        redelivered = await _redeliver(reader, destination, state.ledger_id, findings.missing)
    expired = await idempotency.cleanup_expired() if idempotency is not None else 0
    report = ReconciliationReport(name, head, tuple(findings.missing), tuple(findings.extra),
                                  tuple(findings.altered), redelivered, expired)
    log.info("reconciled", consumer=name, through=head, missing=len(report.missing),
             extra=len(report.extra), altered=len(report.altered), redelivered=redelivered)
    return report


async def _compare(destination: ReconcilableDestination, ledger_id: str,
                   chain: dict[int, bytes], first: int, last: int, cursor: int,
                   dead: set[int], leaf: int, findings: _Findings) -> None:
    """Narrows first..last down to the rows that differ, recording them in findings."""
    expected = range_digest(first, last, [(s, chain[s]) for s in range(first, last + 1)
                                          if s in chain and s <= cursor and s not in dead])
    theirs = await destination.digest(ledger_id, first, last)
    if theirs == expected:
        return
    if last - first < leaf:
        held = await destination.entries(ledger_id, first, last)
        for sequence in range(first, last + 1):
            want, have = chain.get(sequence), held.get(sequence)
            if have is None:
                if want is not None and sequence <= cursor and sequence not in dead:
                    findings.missing.append(sequence)
            elif want is None:
                findings.extra.append(sequence)
            elif have != want:
                findings.altered.append(sequence)
        return
    middle = (first + last) // 2
    await _compare(destination, ledger_id, chain, first, middle, cursor, dead, leaf, findings)
    await _compare(destination, ledger_id, chain, middle + 1, last, cursor, dead, leaf,
                   findings)


async def _redeliver(reader: EventReader, destination: ReconcilableDestination,
                     ledger_id: str, missing: list[int]) -> int:
    """Delivers the missing events again, in runs of consecutive sequences."""
    delivered = 0
    run_start = previous = missing[0]
    for sequence in [*missing[1:], None]:
        if sequence is not None and sequence == previous + 1:
            previous = sequence
            continue
        events = await reader.read_all(ledger_id, after=run_start - 1,
                                       limit=previous - run_start + 1)
        await destination.deliver(events)
        delivered += len(events)
        if sequence is not None:
            run_start = previous = sequence
    return delivered
