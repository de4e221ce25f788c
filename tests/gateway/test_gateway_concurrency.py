"""The gateway under concurrency and crashes: the database serialises every ticket step."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from canonlog.application.gateway import WriteGateway
from canonlog.domain.errors import (
    AppendOutcomeUnknown,
    ConcurrencyConflict,
    TicketClosed,
    TicketExpired,
)
from canonlog.domain.gateway import LedgerExecutor, ticket_stream
from canonlog.domain.tickets import TicketStatus
from canonlog.infrastructure.gateway_policy_file import load_policy_file
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.gateway.conftest import (
    COO_KEY,
    EXAMPLE_POLICIES,
    Clock,
    command,
    plan_command,
    start_writer,
)

ROOT = Path(__file__).parents[2]


async def test_fifty_concurrent_commits_of_one_ticket_write_once(gw):
    await gw.gateway.request_write(command())
    other = WriteGateway(gw.writer, gw.log, "main", {"ledger": LedgerExecutor()}, clock=gw.clock)
    await other.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
    results = await asyncio.gather(*(
        (gw.gateway if i % 2 else other).commit_write("kpi-2026-w49", f"committer-{i % 5}")
        for i in range(50)))
    written = await gw.events("kpi/weekly/revenue")
    assert [e.event_type for e in written] == ["write.upsert", "gateway.committed"]
    assert {tuple(e.sequence for e in r.events) for r in results} == {
        tuple(e.sequence for e in written)}
    assert sum(not r.replayed for r in results) == 1


async def test_a_commit_racing_a_rejection_has_exactly_one_outcome(gw):
    for i in range(10):
        execution = f"plan-race-{i}"
        await gw.gateway.request_write(plan_command(execution, target=f"plans/ceo/7day/r{i}"))
        await gw.gateway.approve(execution, "ceo-2026", await gw.sign(execution))
        outcomes = await asyncio.gather(gw.gateway.commit_write(execution, "committer"),
                                        gw.gateway.reject(execution, "changed my mind", "coo"),
                                        return_exceptions=True)
        ticket = await gw.gateway.ticket(execution)
        written = await gw.events(f"plans/ceo/7day/r{i}")
        if ticket.status is TicketStatus.COMMITTED:
            assert isinstance(outcomes[1], TicketClosed) and len(written) == 2
        else:
            assert ticket.status is TicketStatus.REJECTED
            assert isinstance(outcomes[0], TicketClosed) and written == []


async def test_approvals_racing_expiry_never_land_after_it(gw):
    """One gateway's clock is before the expiry, the other's after: approvals and the
    expiry race on each ticket, and the ticket stream's expected version decides."""
    late = Clock()
    late.now = gw.clock.now
    expiring = WriteGateway(gw.writer, gw.log, "main", {"ledger": LedgerExecutor()}, clock=late)
    await expiring.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
    late.advance(172800)
    for i in range(10):
        execution = f"plan-exp-{i}"
        await gw.gateway.request_write(plan_command(execution, target=f"plans/ceo/7day/e{i}"))
        ceo, coo = await gw.sign(execution), await gw.sign(execution, COO_KEY)
        outcomes = await asyncio.gather(
            gw.gateway.approve(execution, "ceo-2026", ceo),
            expiring.commit_write(execution, "committer"),
            gw.gateway.approve(execution, "coo-2026", coo),
            return_exceptions=True)
        assert isinstance(outcomes[1], TicketExpired)
        for outcome in (outcomes[0], outcomes[2]):
            assert not isinstance(outcome, BaseException) or isinstance(outcome, TicketExpired)
        types = [e.event_type for e in await gw.events(ticket_stream(execution))]
        assert types[-1] == "gateway.expired" and types.count("gateway.expired") == 1
        with pytest.raises(TicketExpired):
            await gw.gateway.commit_write(execution, "committer")
        assert await gw.events(f"plans/ceo/7day/e{i}") == []


class LostAcknowledgement:
    """A writer whose commit reaches the database but whose caller never hears back."""

    def __init__(self, inner):
        self.inner = inner

    async def append(self, request):
        await self.inner.append(request)
        raise AppendOutcomeUnknown("the connection dropped before the outcome arrived")


async def test_a_commit_whose_outcome_was_lost_commits_once_when_retried(gw):
    await gw.gateway.request_write(command())
    lossy = WriteGateway(LostAcknowledgement(gw.writer), gw.log, "main",
                         {"ledger": LedgerExecutor()}, clock=gw.clock)
    await lossy.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
    with pytest.raises(AppendOutcomeUnknown):
        await lossy.commit_write("kpi-2026-w49", "committer")
    result = await gw.gateway.commit_write("kpi-2026-w49", "committer")
    assert result.replayed
    assert len(await gw.events("kpi/weekly/revenue")) == 2


async def test_a_process_killed_between_approval_and_commit_commits_once_after_restart(gw):
    """A child process requests and approves a plan through its own writer, then is
    killed before committing; a restarted writer and gateway commit the ticket once."""
    await gw.writer.stop()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.gateway.crash_child", gw.database.app.uri(),
        gw.database.operator.uri(), cwd=ROOT, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    assert child.returncode == -9, err.decode()
    assert out.decode().splitlines()[-1] == "approved"
    log = await AsyncpgEventLog.connect(gw.database.app.uri(), max_size=4)
    gw.logs.append(log)
    writer = await start_writer(log)
    try:
        gateway = WriteGateway(writer, log, "main", {"ledger": LedgerExecutor()})
        await gateway.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
        assert gateway.policy.version == 1
        ticket = await gateway.ticket("plan-crash")
        assert ticket.status is TicketStatus.APPROVED
        first, again = [await gateway.commit_write("plan-crash", "committer") for _ in range(2)]
        assert not first.replayed and again.replayed
        written = await log.read_stream("main", "plans/ceo/7day/crash")
        assert [e.event_type for e in written] == ["write.create", "gateway.committed"]
    finally:
        await writer.stop()


async def test_a_denial_under_contention_is_recorded_once(gw):
    results = await asyncio.gather(*(gw.gateway.request_write(command(task="NOPE"))
                                     for _ in range(20)), return_exceptions=True)
    assert all(type(r).__name__ == "WriteDenied" for r in results), results
    assert len(await gw.events(ticket_stream("kpi-2026-w49"))) == 1
    assert not any(isinstance(r, ConcurrencyConflict) for r in results)
