"""A writer process for the acceptance tests: appends until killed, reporting each outcome.

Run as ``python -m tests.acceptance.writer_child '<json config>'``. It opens
canonlog with the given settings and appends requests of two events each, with
execution ids ``exec-<n>``, from ``start`` on, ``concurrency`` at a time. Every
outcome is one flushed line on stdout:

    READY <epoch>
    ACK <n> <first sequence> <epoch> <monotonic time submitted>
    ERR <n> <error type> <monotonic time submitted>

Times are time.monotonic(), which is system-wide, so a test can compare them
with its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import canonlog
from canonlog.infrastructure.bootstrap import configure_logging


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(config: dict) -> None:
    settings = canonlog.Settings(
        dsn=config["dsn"], admin_dsn=config["admin_dsn"], data_dir=Path(config["data_dir"]),
        writer_id=config["writer_id"], redis_url=config.get("redis_url"),
        lease_ttl=config.get("lease_ttl", 10.0),
        lease_renew_interval=config.get("lease_renew_interval", 2.0),
        log_level="critical",
    )
    configure_logging(settings)
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
                    say(f"ACK {n} {first.sequence} {first.epoch} {submitted:.6f}")
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(config.get("concurrency", 1))))
    say("DONE")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
