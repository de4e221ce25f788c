"""Fault tests: a private PostgreSQL per test that may be crashed, and logging left as found."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tests.support.killable import KillableServer
from tests.support.servers import APP_ROLE, PgTarget, build_template


@dataclass(frozen=True)
class CrashableDatabase:
    """A migrated database on a private server: `admin` a superuser, `app` the runtime role."""

    server: KillableServer
    admin: PgTarget
    app: PgTarget


@pytest.fixture
async def crashable() -> AsyncIterator[CrashableDatabase]:
    server = KillableServer(Path(tempfile.mkdtemp(prefix="canonlog-fault-")) / "pgdata")
    try:
        admin = await build_template(server.admin)
        yield CrashableDatabase(server, admin, admin.as_user(APP_ROLE))
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _logging_as_before() -> Iterator[None]:
    """canonlog.open() configures structlog when nothing has; other tests expect the defaults."""
    yield
    structlog.reset_defaults()
