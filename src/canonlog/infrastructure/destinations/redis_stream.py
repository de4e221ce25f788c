"""A Redis or Valkey stream as a relay destination: XADD with the sequence as the id.

Entry ``<sequence>-0`` holds the event's hash (hex) and its export line. Stream ids
only grow, so an event at or below the stream's newest id is either there already
(a redelivery: skipped) or can no longer be added (a dead letter replayed after
later events: refused with DestinationError, and left to reconciliation to report).
A delivery is one MULTI/EXEC transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from canonlog.domain.errors import DestinationError
from canonlog.domain.events import RecordedEvent
from canonlog.domain.relay import RangeDigest, range_digest
from canonlog.infrastructure.export import event_to_json

#: Entries read per XRANGE call while reconciling.
_PAGE = 1000


def _sequence(entry_id: Any) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


class RedisStreamDestination:
    """ReconcilableDestination on one stream; the stream follows one ledger."""

    def __init__(self, url: str, stream: str, *, timeout: float = 10.0) -> None:
        self._client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout,
                                                    socket_connect_timeout=timeout)
        self.stream = stream

    async def _newest(self) -> int:
        entries: Any = await self._client.xrevrange(self.stream, count=1)
        return _sequence(entries[0][0]) if entries else 0

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        try:
            newest = await self._newest()
            fresh = [event for event in events if event.sequence > newest]
            for event in events:
                if event.sequence <= newest and not await self._client.xrange(
                        self.stream, f"{event.sequence}-0", f"{event.sequence}-0"):
                    raise DestinationError(
                        f"stream {self.stream}: sequence {event.sequence} is missing and below "
                        f"the newest id {newest}-0; stream ids only grow")
            if not fresh:
                return
            async with self._client.pipeline(transaction=True) as pipe:
                for event in fresh:
                    pipe.xadd(self.stream, {"hash": event.hash.hex(),
                                            "event": event_to_json(event)},
                              id=f"{event.sequence}-0")
                await pipe.execute()
        except RedisError as exc:
            raise DestinationError(f"stream {self.stream}: {type(exc).__name__}: {exc}") from exc

    async def entries(self, ledger_id: str, first: int, last: int) -> dict[int, bytes]:
        held: dict[int, bytes] = {}
        start = f"{first}-0"
        try:
            while True:
                page: Any = await self._client.xrange(self.stream, start, f"{last}-0", count=_PAGE)
                for entry_id, fields in page:
                    raw = fields.get(b"hash", b"")
                    try:
                        held[_sequence(entry_id)] = bytes.fromhex(raw.decode())
                    except ValueError:
                        held[_sequence(entry_id)] = raw  # not a hash: reported as altered
                if len(page) < _PAGE:
                    return held
                start = f"({page[-1][0].decode()}"
        except RedisError as exc:
            raise DestinationError(f"stream {self.stream}: {type(exc).__name__}: {exc}") from exc

    async def digest(self, ledger_id: str, first: int, last: int) -> RangeDigest:
        held = await self.entries(ledger_id, first, last)
        return range_digest(first, last, sorted(held.items()))

    async def close(self) -> None:
        await self._client.aclose()
