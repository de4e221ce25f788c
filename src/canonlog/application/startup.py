"""Startup self-verification: what a writer proves before it accepts writes."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import structlog

from canonlog.application.checkpoints import check_against_checkpoints
from canonlog.application.ports import (
    DatabaseInspector,
    EventLog,
    HaltChannel,
    HeadStore,
    TrustedCheckpoints,
)
from canonlog.application.verifier import verify_chain
from canonlog.domain.errors import (
    CanonlogError,
    LedgerNotFound,
    UnsafeDurability,
    WriterInconsistency,
)
from canonlog.domain.events import GENESIS_HASH, Head

log = structlog.get_logger("canonlog.writer")


async def verify_before_writing(
    event_log: EventLog,
    ledger_id: str,
    writer_id: str,
    heads: HeadStore,
    *,
    halt_channels: Sequence[HaltChannel] = (),
    inspector: DatabaseInspector | None = None,
    checkpoints: TrustedCheckpoints | None = None,
    tail_events: int = 1000,
) -> Head:
    """Checks the database against everything the writer trusts; returns the verified head.

    Raises UnsafeDurability when PostgreSQL could lose acknowledged commits. On any
    mismatch (schema modified, head behind a known head, a hash that differs, a
    broken tail) it halts the ledger, logs CRITICAL with both values and raises
    WriterInconsistency.
    """
    if inspector is not None:
        problems = await inspector.durability_problems()
        if problems:
            log.critical("unsafe durability settings", ledger_id=ledger_id, problems=problems)
            raise UnsafeDurability(
                "PostgreSQL could lose acknowledged writes: " + "; ".join(problems)
            )
        problems = await inspector.schema_problems()
        if problems:
            await _inconsistent(event_log, ledger_id, writer_id, halt_channels,
                                "integrity schema differs from the shipped one: "
                                + "; ".join(problems), problems=problems)

    db_head = await event_log.head(ledger_id)
    trusted = [("last known head", heads.load(ledger_id))]
    for name, known in trusted:
        if known is None or known.sequence == 0:
            continue
        if db_head.sequence < known.sequence:
            await _inconsistent(
                event_log, ledger_id, writer_id, halt_channels,
                f"database head {db_head.sequence} is behind the writer's {name} "
                f"{known.sequence}: events were removed or an old backup was restored",
                database_head=_show(db_head), trusted_head=_show(known), source=name)
        stored = await event_log.read_all(ledger_id, after=known.sequence - 1, limit=1)
        stored_hash = stored[0].hash if stored else b""
        if stored_hash != known.hash:
            await _inconsistent(
                event_log, ledger_id, writer_id, halt_channels,
                f"hash at sequence {known.sequence} is {stored_hash.hex()} in the database "
                f"but {known.hash.hex()} in the writer's {name}",
                database_hash=stored_hash.hex(), trusted_hash=known.hash.hex(),
                sequence=known.sequence, source=name)

    if checkpoints is not None:
        comparison = await check_against_checkpoints(event_log, ledger_id,
                                                     await checkpoints.heads(ledger_id))
        if not comparison.ok:
            first = comparison.mismatches[0]
            await _inconsistent(
                event_log, ledger_id, writer_id, halt_channels,
                f"the database contradicts a trusted checkpoint: {first.message}",
                database=_show(first.database), checkpoint=_show(first.checkpoint),
                last_matching=comparison.last_matching.sequence if comparison.last_matching else 0,
                mismatches=len(comparison.mismatches))

    start = max(0, db_head.sequence - tail_events)
    anchor = GENESIS_HASH
    if start > 0:
        (anchor_event,) = await event_log.read_all(ledger_id, after=start - 1, limit=1)
        anchor = anchor_event.hash
    report = await verify_chain(event_log, ledger_id, after_sequence=start, after_hash=anchor,
                                until=db_head.sequence)
    if not report.ok and report.first_break is not None:
        broken = report.first_break
        await _inconsistent(
            event_log, ledger_id, writer_id, halt_channels,
            f"the chain's tail is broken at sequence {broken.sequence}: {broken.message}",
            sequence=broken.sequence, expected=broken.expected, found=broken.found)
    log.info("startup verification passed", ledger_id=ledger_id, head=db_head.sequence,
             tail_checked=report.events_checked)
    return db_head


def _show(head: Head) -> str:
    return f"{head.sequence}:{head.hash.hex()}"


async def _inconsistent(
    event_log: EventLog,
    ledger_id: str,
    writer_id: str,
    halt_channels: Sequence[HaltChannel],
    message: str,
    **values: object,
) -> None:
    log.critical("startup verification failed; halting the ledger", ledger_id=ledger_id,
                 writer_id=writer_id, reason=message, **values)
    reason = ("writer startup verification failed: " + message)[:1000]
    with contextlib.suppress(LedgerNotFound):
        await event_log.halt(ledger_id, reason, writer_id)
    for channel in halt_channels:
        try:
            await channel.announce(ledger_id, reason)
        except CanonlogError as exc:
            log.error("halt not announced", ledger_id=ledger_id, error=str(exc))
    raise WriterInconsistency(message)
