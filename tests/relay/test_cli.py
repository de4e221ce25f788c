"""`canonlog relay ...` and `canonlog reconcile` as an operator runs them, and a relay
process killed after the destination took the events but before its cursor moved."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import asyncpg
import pytest

from tests.relay.conftest import LEDGER, SECRET, Receiver
from tests.support.cli import ROOT, Cli


@pytest.fixture
def cli(database, tmp_path, projection_dsn) -> Cli:
    return Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"),
        "CANONLOG_RELAY_DESTINATIONS": f"file=file://{tmp_path}/out.jsonl proj={projection_dsn}",
        "CANONLOG_RELAY_MAX_ATTEMPTS": "1",
    })


async def test_run_status_pause_resume_and_reconcile(cli, ledger, projection_dsn):
    head = await ledger.append(12)
    result = await cli.ok("relay", "run", "proj", "--once", "--json")
    assert result.json() == {"consumer": "proj", "synced": head}
    (status,) = (await cli.ok("relay", "status", "--json")).json()
    assert (status["consumer"], status["cursor"]["sequence"], status["lag_events"]) == \
        ("proj", head, 0)
    await cli.ok("relay", "pause", "proj")
    await ledger.append(2)
    assert (await cli.ok("relay", "run", "proj", "--once", "--json")).json()["synced"] == 0
    status = (await cli.ok("relay", "status", "proj", "--json")).json()[0]
    assert status["paused"] and status["lag_events"] == 2 and status["lag_seconds"] > 0
    await cli.ok("relay", "resume", "proj")
    assert (await cli.ok("relay", "run", "proj", "--once", "--json")).json()["synced"] == 2
    conn = await asyncpg.connect(projection_dsn)
    try:
        await conn.execute("DELETE FROM canonlog_projection WHERE seq = 3")
    finally:
        await conn.close()
    report = (await cli.ok("reconcile", "proj", "--json")).json()
    assert (report["missing"], report["redelivered"], report["clean"]) == ([3], 1, False)
    assert (await cli.ok("reconcile", "proj", "--json")).json()["clean"]
    conn = await asyncpg.connect(projection_dsn)
    try:
        await conn.execute("UPDATE canonlog_projection SET hash = sha256(hash) WHERE seq = 5")
    finally:
        await conn.close()
    altered = await cli("reconcile", "proj", "--json")
    assert altered.code == 1 and altered.json()["altered"] == [5]


async def test_dead_letters_are_listed_and_replayed(cli, ledger, tmp_path):
    await ledger.append(3)
    (tmp_path / "out.jsonl").mkdir()  # the file cannot be written: every delivery fails
    await cli.ok("relay", "run", "file", "--once")
    letters = (await cli.ok("relay", "dead-letters", "file", "--json")).json()
    assert [letter["sequence"] for letter in letters] == [1, 2, 3, 4]
    assert "DestinationError" in letters[0]["last_error"]
    (tmp_path / "out.jsonl").rmdir()
    replayed = (await cli.ok("relay", "replay", "file", "--sequence", "2", "--json")).json()
    assert replayed["replayed"] == [2]
    assert (await cli.ok("relay", "replay", "file", "--json")).json()["replayed"] == [1, 3, 4]
    assert (await cli.ok("relay", "dead-letters", "file", "--json")).json() == []
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4


async def test_an_unknown_consumer_is_refused(cli):
    result = await cli("relay", "run", "nobody", "--once")
    assert result.code == 3 and "no destination is configured for consumer 'nobody'" \
        in result.stderr
    result = await cli("relay", "status", "nobody")
    assert result.code == 3 and "ConsumerNotFound" in result.stderr


async def test_a_relay_killed_before_its_cursor_moved_redelivers_without_duplicate_effect(
        database, tmp_path, ledger, receiver):
    """The receiver applies the first delivery, then the relay process is killed before
    it hears back; the restarted relay delivers those events again, and the receiver,
    deduping by sequence, holds each event once."""
    head = await ledger.append(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANONLOG_")} | {
        "CANONLOG_RELAY_DESTINATIONS": f"hook={receiver.url}",
        "CANONLOG_RELAY_WEBHOOK_SECRET": SECRET.decode(), "CANONLOG_RELAY_POLL_INTERVAL": "0.05"}
    original = Receiver.handle

    async def handle_then_kill(request):
        response = await original(receiver, request)
        if len(receiver.deliveries) == 1:
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.sleep(1.0)
        return response

    receiver.handle = handle_then_kill  # the app routes through the receiver's bound method
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canonlog", "--dsn", database.app.uri(), "--admin-dsn",
        database.admin.uri(), "relay", "run", "hook",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    code = await asyncio.wait_for(process.wait(), 30)
    assert code == -signal.SIGKILL, (await process.stderr.read()).decode()
    conn = await asyncpg.connect(database.app.uri())
    try:
        assert await conn.fetchval("SELECT cursor_seq FROM canonlog.relay_consumers") == 0
    finally:
        await conn.close()
    again = await Cli(database.app.uri(), database.admin.uri(), env)("relay", "run", "hook",
                                                                     "--once", "--json")
    assert again.code == 0 and json.loads(again.stdout)["synced"] == head
    assert receiver.deliveries == [f"{LEDGER}:1-{head}"] * 2
    assert sorted(receiver.held) == list(range(1, head + 1))


async def test_a_malformed_destination_setting_is_a_usage_error(cli):
    result = await cli("relay", "status", env={"CANONLOG_RELAY_DESTINATIONS": "no-equals-sign"})
    assert result.code == 2 and "is not 'NAME=URL'" in result.stderr


async def test_two_relay_processes_for_one_consumer_one_runs_the_other_takes_over(
        database, cli, ledger):
    async def start():
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "canonlog", "--dsn", database.app.uri(), "--admin-dsn",
            database.admin.uri(), "relay", "run", "file", cwd=ROOT,
            env=cli.env | {"CANONLOG_RELAY_POLL_INTERVAL": "0.05"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def cursor_reaches(conn, sequence: int) -> None:
        for _ in range(500):
            if await conn.fetchval("SELECT cursor_seq FROM canonlog.relay_consumers "
                                   "WHERE consumer = 'file'") == sequence:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the cursor did not reach {sequence}")

    conn = await asyncpg.connect(database.admin.uri())
    first = await start()
    second = None
    try:
        await cursor_reaches(conn, await ledger.append(3))
        second = await start()
        await asyncio.sleep(1.0)  # long enough for the second to have tried the lease
        holders = await conn.fetch("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                                   "AND classid::int = 1668050793 AND granted")
        assert len(holders) == 1 and second.returncode is None
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 10) == 0
        await cursor_reaches(conn, await ledger.append(2))  # delivered by the second
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await conn.close()
