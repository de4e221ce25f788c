"""The database's halt flag as a halt channel."""

from __future__ import annotations

from canonlog.application.ports import EventLog
from canonlog.domain.errors import CanonlogError, HaltStateUnknown, LedgerNotFound


class LedgerHaltChannel:
    """Reads the halt flag the append path itself enforces; fails closed on any error.

    Announcing is a no-op here: the flag is set by the chained halt event
    (EventLog.halt), never by a message.
    """

    def __init__(self, event_log: EventLog) -> None:
        self._log = event_log

    async def halt_reason(self, ledger_id: str) -> str | None:
        try:
            state = await self._log.ledger_state(ledger_id)
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
