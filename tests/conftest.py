"""Session-wide real servers and a fresh database per test.

A session starts one embedded PostgreSQL (or uses CANONLOG_TEST_DSN), migrates a
template database once, and clones it for each test that asks for `database`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.support.servers import APP_ROLE, PgTarget, admin_target, build_template, clone, drop


@dataclass(frozen=True)
class TestDatabase:
    """A fresh, migrated database: `admin` is a superuser, `app` the runtime login role."""

    __test__ = False
    admin: PgTarget
    app: PgTarget


@pytest.fixture(scope="session")
def pg_admin() -> PgTarget:
    return admin_target()


@pytest.fixture(scope="session")
async def pg_template(pg_admin: PgTarget) -> AsyncIterator[PgTarget]:
    template = await build_template(pg_admin)
    yield template
    await drop(pg_admin, template)


@pytest.fixture
async def database(pg_admin: PgTarget, pg_template: PgTarget) -> AsyncIterator[TestDatabase]:
    target = await clone(pg_admin, pg_template)
    yield TestDatabase(admin=target, app=target.as_user(APP_ROLE))
    await drop(pg_admin, target)
