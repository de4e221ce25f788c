"""Halting a ledger: recorded in the database first, then announced; a failed
announcement is reported and never undoes or hides the halt."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from canonlog.application.halting import LedgerHaltChannel, halt_ledger
from canonlog.domain.errors import LedgerNotFound, StorageError
from canonlog.infrastructure.memory import MemoryEventLog


class RecordingChannel:
    """A halt channel that remembers what it was told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str | None]] = []

    async def halt_reason(self, ledger_id: str) -> str | None:
        return None

    async def announce(self, ledger_id: str, reason: str | None) -> None:
        self.told.append((ledger_id, reason))


class UnreachableChannel(RecordingChannel):
    async def announce(self, ledger_id: str, reason: str | None) -> None:
        raise StorageError("could not announce: connection refused")


@pytest.fixture
async def log() -> MemoryEventLog:
    log = MemoryEventLog()
    await log.acquire_grant("main", "writer-a")
    return log


async def test_a_failed_announcement_is_reported_and_the_halt_stands(log) -> None:
    before, broken, after = RecordingChannel(), UnreachableChannel(), RecordingChannel()
    with capture_logs() as logs:
        outcome = await halt_ledger(log, "main", "disk audit", "ops", [before, broken, after])
    assert outcome.recorded and outcome.reason == "disk audit"
    assert [(channel, str(error)) for channel, error in outcome.unannounced] == [
        (broken, "could not announce: connection refused")]
    assert before.told == after.told == [("main", "disk audit")]
    state = await log.ledger_state("main")
    assert state.halted and state.halt_reason == "disk audit"
    assert await LedgerHaltChannel(log).halt_reason("main") == "disk audit"
    (entry,) = [e for e in logs if e["log_level"] == "error"]
    assert entry["ledger_id"] == "main" and entry["channel"] == "UnreachableChannel"
    assert entry["error"] == "could not announce: connection refused"


async def test_halting_a_halted_ledger_announces_the_reason_in_force(log) -> None:
    channel = RecordingChannel()
    assert (await halt_ledger(log, "main", "first", "ops")).recorded
    again = await halt_ledger(log, "main", "second", "ops", [channel])
    assert not again.recorded and again.reason == "first" and not again.unannounced
    assert channel.told == [("main", "first")]
    assert (await log.ledger_state("main")).halt_reason == "first"


async def test_an_unknown_ledger_is_announced_only_when_the_caller_allows_it(log) -> None:
    channel = RecordingChannel()
    with pytest.raises(LedgerNotFound):
        await halt_ledger(log, "nowhere", "drill", "ops", [channel])
    assert channel.told == []
    outcome = await halt_ledger(log, "nowhere", "drill", "ops", [channel],
                                missing_ledger_ok=True)
    assert not outcome.recorded and channel.told == [("nowhere", "drill")]
    assert await LedgerHaltChannel(log).halt_reason("nowhere") is None
