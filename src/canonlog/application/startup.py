"""Startup self-verification: what a writer proves before it accepts writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NoReturn

import structlog

from canonlog.application.halting import halt_ledger
from canonlog.application.ports import (
    DatabaseInspector,
    GovernedLedger,
    HaltChannel,
    HeadStore,
    TrustedCheckpoints,
)
from canonlog.application.verification import (
    UNPROTECTED,
    VerificationReport,
    check_against_checkpoints,
    verify_ledger,
)
from canonlog.domain.errors import (
    CanonlogError,
    UnsafeDurability,
    UnsafeLogin,
    WriterInconsistency,
)
from canonlog.domain.events import Head

logger = structlog.get_logger("canonlog.writer")

_LAST_KNOWN: Final = "last known head"


async def verify_before_writing(
    event_log: GovernedLedger,
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

    Incremental: the last tail_events are recomputed and every trusted checkpoint
    compared, not the history before them; the log line saying it passed names
    what was not checked (a full `canonlog verify` recomputes it).

    Raises UnsafeDurability when PostgreSQL could lose acknowledged commits, and
    UnsafeLogin when the writer's login is a superuser, a member of canonlog_owner or
    the owner of a canonlog object (neither halts the ledger). On any
    mismatch (schema modified, head behind a known head, a hash that differs, a
    broken tail) it halts the ledger, logs CRITICAL with both values and raises
    WriterInconsistency.
    """
    if inspector is not None:
        problems = await inspector.durability_problems()
        if problems:
            logger.critical("unsafe durability settings", ledger_id=ledger_id, problems=problems)
            raise UnsafeDurability(
                "PostgreSQL could lose acknowledged writes: " + "; ".join(problems)
            )
        problems = await inspector.login_problems()
        if problems:
            logger.critical("the writer's login may bypass the append function",
                            ledger_id=ledger_id, problems=problems)
            raise UnsafeLogin("the writer's login holds more than the canonlog_writer role: "
                              + "; ".join(problems))
        problems = await inspector.schema_problems()
        if problems:
            await _inconsistent(event_log, ledger_id, writer_id, halt_channels,
                                "integrity schema differs from the shipped one: "
                                + "; ".join(problems), problems=problems)

    known = heads.load(ledger_id)
    against_known = await check_against_checkpoints(event_log, ledger_id, [known] if known else [])
    for mismatch in against_known.mismatches:
        database, trusted = mismatch.database, mismatch.checkpoint
        if mismatch.kind == "behind":
            await _inconsistent(
                event_log, ledger_id, writer_id, halt_channels,
                f"database head {database.sequence} is behind the writer's last known head "
                f"{trusted.sequence}: events were removed or an old backup was restored",
                database_head=_show(database), trusted_head=_show(trusted), source=_LAST_KNOWN)
        await _inconsistent(
            event_log, ledger_id, writer_id, halt_channels,
            f"hash at sequence {trusted.sequence} is {database.hash.hex()} in the database "
            f"but {trusted.hash.hex()} in the writer's {_LAST_KNOWN}",
            database_hash=database.hash.hex(), trusted_hash=trusted.hash.hex(),
            sequence=trusted.sequence, source=_LAST_KNOWN)

    verification = await verify_ledger(
        event_log, ledger_id, trusted=await checkpoints.heads(ledger_id) if checkpoints else (),
        tail=tail_events)
    comparison = verification.checkpoints
    if not comparison.ok:
        first = comparison.mismatches[0]
        await _inconsistent(
            event_log, ledger_id, writer_id, halt_channels,
            f"the database contradicts a trusted checkpoint: {first.message}",
            database=_show(first.database), checkpoint=_show(first.checkpoint),
            last_matching=comparison.last_matching.sequence if comparison.last_matching else 0,
            mismatches=len(comparison.mismatches))
    broken = verification.chain.first_break
    if broken is not None:
        await _inconsistent(
            event_log, ledger_id, writer_id, halt_channels,
            f"the chain's tail is broken at sequence {broken.sequence}: {broken.message}",
            sequence=broken.sequence, expected=broken.expected, found=broken.found)
    db_head = comparison.database_head
    logger.info("startup verification passed", ledger_id=ledger_id, head=db_head.sequence,
                tail_checked=verification.chain.events_checked,
                checkpoints_compared=comparison.checked,
                not_checked=_not_checked(verification))
    return db_head


def _not_checked(verification: VerificationReport) -> str:
    """What a startup check leaves to a full `canonlog verify`."""
    gap = verification.coverage.not_recomputed()
    unchecked = [gap] if gap else []
    policy = verification.coverage.policy_not_checked()
    if policy:
        unchecked.append(policy)
    if verification.unprotected:
        unchecked.append(UNPROTECTED)
    return "; ".join(unchecked) or "nothing: every hash was recomputed"


def _show(head: Head) -> str:
    return f"{head.sequence}:{head.hash.hex()}"


async def _inconsistent(
    event_log: GovernedLedger,
    ledger_id: str,
    writer_id: str,
    halt_channels: Sequence[HaltChannel],
    message: str,
    **values: object,
) -> NoReturn:
    logger.critical("startup verification failed; halting the ledger", ledger_id=ledger_id,
                    writer_id=writer_id, reason=message, **values)
    reason = ("writer startup verification failed: " + message)[:1000]
    try:
        await halt_ledger(event_log, ledger_id, reason, writer_id, halt_channels,
                          missing_ledger_ok=True)
    except CanonlogError as exc:  # a damaged schema may break the halt itself
        logger.critical("the ledger could not be halted", ledger_id=ledger_id, error=str(exc))
        raise WriterInconsistency(f"{message} (halting the ledger failed too: {exc})") from exc
    raise WriterInconsistency(message)
