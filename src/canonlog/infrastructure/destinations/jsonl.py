"""A JSON Lines file as a relay destination: one exported event per line.

Lines use the export format (canonlog.infrastructure.export), so a file that
received every event in order verifies with ``canonlog verify --export``. The file
follows one ledger. The sequences already in the file are read once when it opens; an event whose
sequence is there is not written again. A delivery is confirmed once its lines
are flushed and fsynced.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from canonlog.domain.errors import DestinationError
from canonlog.domain.events import RecordedEvent
from canonlog.domain.relay import RangeDigest, range_digest
from canonlog.infrastructure.export import event_to_json


class JsonLinesDestination:
    """ReconcilableDestination appending to one file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held: dict[int, tuple[str, bytes]] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> dict[int, tuple[str, bytes]]:
        held: dict[int, tuple[str, bytes]] = {}
        try:
            lines = self._path.read_bytes().splitlines() if self._path.exists() else []
        except OSError as exc:
            raise DestinationError(f"cannot read {self._path}: {exc}") from exc
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                held[int(record["sequence"])] = (str(record["ledger_id"]),
                                                 bytes.fromhex(record["hash"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DestinationError(f"{self._path}:{number}: not an event line: "
                                       f"{exc}") from exc
        return held

    def _write(self, events: Sequence[RecordedEvent]) -> None:
        held = self._held if self._held is not None else self._load()
        self._held = held
        fresh = [event for event in events if event.sequence not in held]
        if not fresh:
            return
        data = "".join(event_to_json(event) + "\n" for event in fresh).encode("utf-8")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self._held = None  # a partial write is read back on the next attempt
            raise DestinationError(f"cannot write {self._path}: {exc}") from exc
        for event in fresh:
            held[event.sequence] = (event.ledger_id, event.hash)

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._write, events)

    async def entries(self, ledger_id: str, first: int, last: int) -> dict[int, bytes]:
        async with self._lock:
            # Read afresh: reconciliation judges the file as it is now.
            self._held = await asyncio.to_thread(self._load)
            return {seq: digest for seq, (ledger, digest) in self._held.items()
                    if ledger == ledger_id and first <= seq <= last}

    async def digest(self, ledger_id: str, first: int, last: int) -> RangeDigest:
        held = await self.entries(ledger_id, first, last)
        return range_digest(first, last, sorted(held.items()))

    async def close(self) -> None:
        self._held = None
