"""LISTEN/NOTIFY as a wake-up hint for subscribers.

append_v2 notifies ``canonlog_events`` with ``ledger:last_sequence`` at commit.
A notification can be lost (the listening connection drops, the queue fills),
so callers of wait() always re-read after it returns, and wait() returns at
its timeout regardless: subscribers poll when no hint arrives.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

CHANNEL = "canonlog_events"
#: What asyncpg raises when the listening connection cannot be opened or used.
_CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError,
                      asyncpg.InternalClientError, OSError, TimeoutError)
log = structlog.get_logger(__name__)


class PostgresNotifier:
    """EventNotifier on a dedicated asyncpg connection, reconnected lazily."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._latest: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._connecting = asyncio.Lock()

    async def _ensure_listening(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                self._conn = await asyncpg.connect(self._dsn)
                await self._conn.add_listener(CHANNEL, self._on_notify)
            except _CONNECTION_ERRORS as exc:
                self._conn = None
                log.warning("cannot listen for new events; polling", error=str(exc))

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        ledger_id, _, sequence = str(payload).rpartition(":")
        if sequence.isdigit():
            self._latest[ledger_id] = max(self._latest.get(ledger_id, 0), int(sequence))
            changed = self._changed.pop(ledger_id, None)
            if changed is not None:
                changed.set()

    async def wait(self, ledger_id: str, after: int, timeout: float) -> None:
        await self._ensure_listening()
        if self._latest.get(ledger_id, 0) > after:
            return
        changed = self._changed.setdefault(ledger_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._conn.close()
            self._conn = None
