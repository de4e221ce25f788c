"""One EventLog specification, run against every adapter.

In PostgreSQL each step runs as the login whose step it is: the administrator
establishes governance policies, the application's login holds the grant and
appends, the operator's login runs everything else (halts, keys, ceremonies)
and reads. The in-memory log is all three."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from canonlog.application.ports import EventLog
from tests.conftest import TestDatabase
from tests.support.roles import by_role

ADAPTERS = ["memory", "asyncpg", "psycopg"]

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
        log = await by_role(Adapter, database)
    yield log
    await log.close()
