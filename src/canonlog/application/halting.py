"""Halting a ledger, and the database's halt flag read as a halt channel.

The halt recorded in the database is the safety mechanism: once the chained
``canonlog.halted`` event is in, the append path refuses every write, whoever
sends it. Halt channels (Redis, in production) only let other processes learn of
the halt before their next write reaches the database. So a halt is recorded
first and announced after, and an announcement that fails is reported, never
allowed to undo or hide the halt. Every place that halts a ledger (the writer,
its startup self-verification, the operator's command) calls halt_ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from canonlog.application.ports import EventReader, GovernedLedger, HaltChannel
from canonlog.domain.errors import CanonlogError, HaltStateUnknown, LedgerNotFound

logger = structlog.get_logger("canonlog.halting")


@dataclass(frozen=True, slots=True)
class HaltOutcome:
    """What halting a ledger came to.

    ``recorded`` is True when this call recorded the halt, False when the ledger
    was halted already (its halt and reason stand) or, when allowed, does not
    exist. ``reason`` is the reason in force, the one announced. ``unannounced``
    holds every channel that could not be told, with the error it raised.
    """

    ledger_id: str
    reason: str
    recorded: bool
    unannounced: tuple[tuple[HaltChannel, CanonlogError], ...] = ()


async def halt_ledger(
    event_log: GovernedLedger,
    ledger_id: str,
    reason: str,
    actor: str,
    channels: Sequence[HaltChannel] = (),
    *,
    missing_ledger_ok: bool = False,
) -> HaltOutcome:
    """Halts the ledger with a chained event, then announces the halt on every channel.

    The halt is recorded first. When recording fails, that error is raised and
    nothing is announced: LedgerNotFound for an unknown ledger, unless
    missing_ledger_ok, in which case the reason is still announced (a writer that
    found its database untrustworthy warns the other processes all the same).
    A ledger halted already keeps its halt, and its reason in force is announced
    again. A channel that fails to take the announcement is logged at error level
    with its cause and the next channels are still told; the halt stands, and the
    caller finds each such channel in HaltOutcome.unannounced.
    """
    try:
        recorded = await event_log.halt(ledger_id, reason, actor)
    except LedgerNotFound:
        if not missing_ledger_ok:
            raise
        recorded = False
    else:
        if not recorded:
            reason = (await event_log.ledger_state(ledger_id)).halt_reason or reason
    unannounced: list[tuple[HaltChannel, CanonlogError]] = []
    for channel in channels:
        try:
            await channel.announce(ledger_id, reason)
        except CanonlogError as exc:
            logger.error("halt not announced; the ledger is halted in the database all the same",
                         ledger_id=ledger_id, channel=type(channel).__name__, error=str(exc))
            unannounced.append((channel, exc))
    return HaltOutcome(ledger_id, reason, recorded, tuple(unannounced))


class LedgerHaltChannel:
    """Reads the halt flag the append path itself enforces; fails closed on any error.

    Announcing is a no-op here: the flag is set by the chained halt event
    (halt_ledger), never by a message.
    """

    def __init__(self, event_log: EventReader) -> None:
        self._event_log = event_log

    async def halt_reason(self, ledger_id: str) -> str | None:
        try:
            state = await self._event_log.ledger_state(ledger_id)
        except LedgerNotFound:
            return None
        except CanonlogError as exc:
            raise HaltStateUnknown(
                f"halt state of ledger {ledger_id} is unknown ({exc}); writes are refused"
            ) from exc
        if not state.halted:
            return None
        return state.halt_reason or "halted"

    async def announce(self, ledger_id: str, reason: str | None) -> None:
        return None
