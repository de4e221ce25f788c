"""Requests and approves a plan through a writer of its own, then dies by SIGKILL before
committing it (run by test_gateway_concurrency)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from canonlog.application.gateway import WriteGateway
from canonlog.domain.gateway import LedgerExecutor
from canonlog.infrastructure.gateway_policy_file import load_policy_file
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.gateway.conftest import CEO_KEY, EXAMPLE_POLICIES, plan_command, start_writer


async def main(app_uri: str) -> None:
    log = await AsyncpgEventLog.connect(app_uri, max_size=2)
    writer = await start_writer(log)
    gateway = WriteGateway(writer, log, "main", {"ledger": LedgerExecutor()})
    await gateway.load_policies(load_policy_file(EXAMPLE_POLICIES), "ops")
    ticket = await gateway.request_write(plan_command("plan-crash", target="plans/ceo/7day/crash"))
    await gateway.approve("plan-crash", "ceo-2026", CEO_KEY.sign(gateway.statement(ticket)))
    print("approved", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
