"""A domain service's unit test of a governed write, on canonlog.testing alone."""

from __future__ import annotations

import pytest

from canonlog.domain.errors import ApprovalsMissing, WriteDenied
from canonlog.domain.tickets import TicketStatus
from canonlog.infrastructure.gateway_policy_file import load_policy_file
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.testing import open_in_memory_gateway
from tests.gateway.conftest import CEO_KEY, EXAMPLE_POLICIES, command, plan_command
from tests.support.keys import public_bytes


async def test_open_in_memory_gateway_runs_the_example_tasks_with_the_same_rules():
    log = MemoryEventLog()
    async with open_in_memory_gateway(load_policy_file(EXAMPLE_POLICIES), "main",
                                      event_log=log) as gateway:
        await log.add_key("main", "ceo-2026", "agent", "ceo", public_bytes(CEO_KEY), "test")
        await gateway.request_write(command())
        committed = await gateway.commit_write("kpi-2026-w49", "kpi-job")
        assert [e.event_type for e in committed.events] == ["write.upsert", "gateway.committed"]

        ticket = await gateway.request_write(plan_command())
        with pytest.raises(ApprovalsMissing):
            await gateway.commit_write("plan-7-001", "planner")
        await gateway.approve("plan-7-001", "ceo-2026", CEO_KEY.sign(gateway.statement(ticket)))
        await gateway.commit_write("plan-7-001", "planner")
        assert (await gateway.ticket("plan-7-001")).status is TicketStatus.COMMITTED
        with pytest.raises(WriteDenied, match="no policy allows task 'PAYROLL'"):
            await gateway.request_write(command(task="PAYROLL", execution_id="p-1"))
