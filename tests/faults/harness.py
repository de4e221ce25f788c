"""Concurrent appends through canonlog.open() while faults are injected, and what they came to.

AppendLoad keeps ``workers`` callers appending requests of two events with
execution ids ``exec-<n>``; a caller retries its request with the same
execution id until it is acknowledged, as an application resolving an
ambiguous outcome would. Afterwards, audit() reads the ledger as a superuser
and counts what was lost, duplicated or out of sequence, and verifies the chain.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

import canonlog
from canonlog.application.chain_verification import verify_chain
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog


@dataclass
class AppendLoad:
    """Appends from `workers` concurrent callers until stopped; records every acknowledgement."""

    log: canonlog.LedgerClient
    workers: int = 8
    #: execution number -> (first sequence, epoch) of its acknowledged events
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: (when the acknowledged attempt was submitted, when it was acknowledged)
    ack_times: list[tuple[float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    next_n: int = 0
    #: Errors after which a caller gives its request up instead of retrying it (a fenced
    #: writer's refusals); the request is then counted in `abandoned`.
    give_up_on: tuple[type[canonlog.CanonlogError], ...] = ()
    abandoned: set[int] = field(default_factory=set)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def stop(self, *, within: float = 60.0) -> None:
        """Stops taking new requests and waits for every started one to be acknowledged."""
        self._stopping = True
        async with asyncio.timeout(within):
            await asyncio.gather(*self._tasks)

    async def wait_for_acks(self, count: int, *, after: float = 0.0,
                            within: float = 30.0) -> float:
        """Waits for `count` acknowledgements of appends submitted at or after `after`;
        returns when the first of them was acknowledged."""
        deadline = time.monotonic() + within
        while True:
            recent = sorted(acked for submitted, acked in self.ack_times if submitted >= after)
            if len(recent) >= count:
                return recent[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(recent)} of {count} appends acknowledged within {within}s; "
                    f"errors so far: {self.errors}; writer: {self.log.writer.health()}")
            await asyncio.sleep(0.02)

    async def _worker(self) -> None:
        while not self._stopping:
            n = self.next_n
            self.next_n += 1
            while True:
                submitted = time.monotonic()
                try:
                    result = await self.log.append(
                        f"stream-{n % 7}",
                        [canonlog.event("tick", {"n": n}), canonlog.event("tock", {"n": n})],
                        execution_id=f"exec-{n}",
                    )
                except canonlog.CanonlogError as exc:
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    await asyncio.sleep(0.05)
                    if isinstance(exc, self.give_up_on):
                        self.abandoned.add(n)
                        break
                    continue
                first = result.events[0]
                self.acked[n] = (first.sequence, first.epoch)
                self.ack_times.append((submitted, time.monotonic()))
                break


@dataclass(frozen=True)
class Audit:
    events: int
    lost: int
    duplicated: int
    gaps: int
    moved: int
    chain_ok: bool

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.gaps or self.moved) and self.chain_ok


async def audit(admin_uri: str, app_uri: str, acked: dict[int, tuple[int, int]],
                ledger: str = "main") -> Audit:
    """Holds the ledger to what was acknowledged: each exactly once, where it was reported."""
    conn = await asyncpg.connect(admin_uri)
    try:
        rows = await conn.fetch("SELECT seq, execution_id, event_type FROM canonlog.events"
                                " WHERE ledger_id = $1 ORDER BY seq", ledger)
    finally:
        await conn.close()
    sequences = [r["seq"] for r in rows]
    gaps = sum(1 for a, b in zip([0, *sequences], sequences, strict=False) if b != a + 1)
    by_execution: dict[str, list[int]] = {}
    for row in rows:
        if row["execution_id"]:
            by_execution.setdefault(row["execution_id"], []).append(row["seq"])
    lost = sum(1 for n in acked if f"exec-{n}" not in by_execution)
    duplicated = sum(1 for seqs in by_execution.values() if len(seqs) != 2)
    moved = sum(1 for n, (sequence, _) in acked.items()
                if by_execution.get(f"exec-{n}", [None])[0] != sequence)
    event_log = await AsyncpgEventLog.connect(app_uri)
    try:
        chain_ok = (await verify_chain(event_log, ledger)).ok
    finally:
        await event_log.close()
    return Audit(len(rows), lost, duplicated, gaps, moved, chain_ok)
