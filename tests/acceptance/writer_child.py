"""A writer process for the acceptance tests: appends until killed, reporting each outcome.

Run as ``python -m tests.acceptance.writer_child '<json config>'``. It opens
canonlog with the given settings and appends requests of two events each, with
execution ids ``exec-<n>``, from ``start`` on, ``concurrency`` at a time. Every
outcome is one flushed line on stdout:

    READY <epoch>
    ACK <n> <first sequence> <epoch> <monotonic time submitted> <replayed 0|1>
    ERR <n> <error type> <monotonic time submitted>

Times are time.monotonic(), which is system-wide, so a test can compare them
with its own.

With CANONLOG_TEST_KILL_AT=<point>:<n> in its environment the process SIGKILLs
itself at a named point of the append of exec-<n>: ``before_append`` (before the
call to the client), ``before_commit`` (the append function has run on the
server inside a transaction that is not committed) or ``after_commit`` (the
append committed, its caller not yet resolved). With
CANONLOG_TEST_BLOCK_AT=<n>:<seconds> it blocks its event loop for that long
(a blocking call, as a long GC pause would) once exec-<n> is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

import canonlog
from canonlog.infrastructure.bootstrap import configure_logging


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point() -> tuple[str, int] | None:
    point, _, n = os.environ.get("CANONLOG_TEST_KILL_AT", "").partition(":")
    return (point, int(n)) if point else None


def block_point() -> tuple[int, float] | None:
    n, _, seconds = os.environ.get("CANONLOG_TEST_BLOCK_AT", "").partition(":")
    return (int(n), float(seconds)) if n else None


def install_kill_point(point: str, n: int) -> None:
    """Wraps asyncpg's fetchrow, which runs the append function, for the batch of exec-<n>."""
    original = asyncpg.connection.Connection.fetchrow
    marker = f"exec-{n}"

    async def fetchrow(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        if "append_v" not in query or marker not in repr(args):
            return await original(self, query, *args, **kw)
        if point == "before_commit":
            transaction = self.transaction()
            await transaction.start()
            await original(self, query, *args, **kw)
            die()
        row = await original(self, query, *args, **kw)
        die()
        return row

    asyncpg.connection.Connection.fetchrow = fetchrow  # type: ignore[method-assign]


async def main(config: dict) -> None:
    settings = canonlog.Settings(
        dsn=config["dsn"], admin_dsn=config["admin_dsn"], data_dir=Path(config["data_dir"]),
        writer_id=config["writer_id"], redis_url=config.get("redis_url"),
        lease_ttl=config.get("lease_ttl", 10.0),
        lease_renew_interval=config.get("lease_renew_interval", 2.0),
        log_level="critical",
    )
    configure_logging(settings)
    kill_at = kill_point()
    if kill_at is not None and kill_at[0] in ("before_commit", "after_commit"):
        install_kill_point(*kill_at)
    block_at = block_point()
    async with canonlog.open(settings) as log:
        say(f"READY {log.writer.grant.epoch}")
        next_n = config["start"]
        stop_at = config["start"] + config["count"]
        pause = config.get("pause", 0.0)

        async def worker() -> None:
            nonlocal next_n
            while next_n < stop_at:
                n = next_n
                next_n += 1
                submitted = time.monotonic()
                if kill_at == ("before_append", n):
                    die()
                try:
                    result = await log.append(
                        f"stream-{n % 7}",
                        [canonlog.event("tick", {"n": n, "part": 1}),
                         canonlog.event("tock", {"n": n, "part": 2})],
                        execution_id=f"exec-{n}", task_id="acceptance",
                    )
                except canonlog.CanonlogError as exc:
                    say(f"ERR {n} {type(exc).__name__} {submitted:.6f}")
                    await asyncio.sleep(0.05)
                else:
                    first = result.events[0]
                    say(f"ACK {n} {first.sequence} {first.epoch} {submitted:.6f} {int(result.replayed)}")
                    if block_at is not None and block_at[0] == n:
                        say(f"BLOCKED {time.monotonic():.6f}")
                        time.sleep(block_at[1])  # noqa: ASYNC251 - the fault under test
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(config.get("concurrency", 1))))
    say("DONE")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
