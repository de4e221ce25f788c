"""One EventLog specification, run against every adapter.

In PostgreSQL each step runs as the login whose step it is: the administrator
establishes governance policies, the application's login holds the grant and
appends, the operator's login runs everything else (halts, keys, ceremonies)
and reads. The in-memory log is all three."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from canonlog.application.ports import EventLog
from tests.conftest import TestDatabase

ADAPTERS = ["memory", "asyncpg", "psycopg"]
#: The administrator's and the writer's steps; every other one is the operator's.
ADMIN_STEPS = {"establish_policy"}
WRITER_STEPS = {"acquire_grant", "release_grant", "append_batch", "append"}


class ByRole:
    """One EventLog whose steps each run as the login they belong to."""

    def __init__(self, writer: EventLog, operator: EventLog, admin: EventLog) -> None:
        self.writer, self.operator, self.admin = writer, operator, admin

    def __getattr__(self, name: str) -> Any:
        log = (self.admin if name in ADMIN_STEPS else self.writer if name in WRITER_STEPS
               else self.operator)
        return getattr(log, name)

    async def close(self) -> None:
        for log in (self.writer, self.operator, self.admin):
            await log.close()


@pytest.fixture(params=ADAPTERS)
async def event_log(
    request: pytest.FixtureRequest, database: TestDatabase
) -> AsyncIterator[EventLog]:
    log: EventLog
    if request.param == "memory":
        from canonlog.infrastructure.memory import MemoryEventLog

        log = MemoryEventLog()
    else:
        if request.param == "asyncpg":
            from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog as Adapter
        else:
            from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog as Adapter
        log = ByRole(*[await Adapter.connect(target.uri())  # type: ignore[misc]
                       for target in (database.app, database.operator, database.admin)])
    yield log
    await log.close()
