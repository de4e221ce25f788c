"""`canonlog serve`: the real command, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from canonlog.infrastructure.bootstrap import open_ledger
from tests.http.conftest import AUDIENCE, ISSUER, free_port, service_settings
from tests.support.cli import ROOT, Cli


async def test_serve_prints_where_the_api_and_its_docs_are_serves_and_stops_on_sigterm(
        database, tmp_path, tokens, jwks_file):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANONLOG_")} | {
        "CANONLOG_DATA_DIR": str(tmp_path), "CANONLOG_JWKS_FILE": str(jwks_file),
        "CANONLOG_JWT_ISSUER": ISSUER, "CANONLOG_JWT_AUDIENCE": AUDIENCE}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canonlog", "--dsn", database.app.uri(), "--admin-dsn",
        database.admin.uri(), "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        announced = {}
        while len(announced) < 7:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "serve exited before it announced its addresses"
            name, url = line.split()
            announced[name] = url
        base = f"http://127.0.0.1:{port}"
        assert announced["api"] == f"{base}/v1"
        assert announced["docs"] == f"{base}/docs"
        assert announced["operator"] == f"{base}/ui/"
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/ui/")
            assert page.status_code == 200
            assert "canonlog operator view" in page.text
            assert (await client.get("/", follow_redirects=True)).url.path == "/ui/"
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/docs")).status_code == 200
            assert (await client.get("/v1/head")).status_code == 401
            head = await client.get("/v1/head", headers=tokens.bearer("read"))
            assert head.json()["sequence"] == 1
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    # uvicorn ends the process with the signal it stopped for, after a clean shutdown.
    assert code in (0, -signal.SIGTERM)


async def test_serve_refuses_to_start_unauthenticated_beyond_loopback_or_without_keys(
        database, tmp_path):
    cli = Cli(database.app.uri(), database.admin.uri(), env={"CANONLOG_DATA_DIR": str(tmp_path)})
    no_keys = await cli("serve", "--port", str(free_port()))
    assert no_keys.code == 2
    assert "CANONLOG_JWKS_FILE" in no_keys.stderr
    open_to_all = await cli("serve", "--no-auth", "--host", "0.0.0.0", "--port", str(free_port()))
    assert open_to_all.code == 2
    assert "loopback" in open_to_all.stderr


async def test_serve_exits_refused_when_another_writer_holds_the_lease(database, tmp_path):
    settings = service_settings(database.app, database.admin, tmp_path / "first")
    async with open_ledger(settings):
        cli = Cli(database.app.uri(), database.admin.uri(),
                  env={"CANONLOG_DATA_DIR": str(tmp_path / "second")})
        refused = await cli("serve", "--no-auth", "--port", str(free_port()))
    assert refused.code == 3
    assert "LeaseUnavailable" in refused.stderr
    assert "Traceback" not in refused.stderr
