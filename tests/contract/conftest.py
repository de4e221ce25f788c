"""One EventLog specification, run against every adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from canonlog.application.ports import EventLog
from tests.conftest import TestDatabase

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
            from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog

            log = await AsyncpgEventLog.connect(database.app.uri())
        else:
            from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog

            log = await PsycopgEventLog.connect(database.app.uri())
    yield log
    await log.close()
