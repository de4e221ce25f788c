"""What the writer checks about its PostgreSQL server before accepting writes."""

from __future__ import annotations

import asyncpg

from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.catalogue import login_problems
from canonlog.infrastructure.postgres.migrations import check_schema
from canonlog.infrastructure.postgres.queries import QUERIES

#: Settings under which a commit PostgreSQL acknowledged could be lost in a crash
#: (https://www.postgresql.org/docs/current/runtime-config-wal.html).
_UNSAFE = {
    "fsync": ("off", "fsync is off: a crash can lose or corrupt committed data"),
    "synchronous_commit": ("off", "synchronous_commit is off: commits are acknowledged "
                                  "before they are durable"),
    "full_page_writes": ("off", "full_page_writes is off: a crash can leave torn pages"),
}


class PostgresInspector:
    """DatabaseInspector over an asyncpg pool, seeing what the writer's sessions see."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def schema_problems(self) -> list[str]:
        async with translated(), self._pool.acquire() as conn:
            report = await check_schema(conn)
        return list(report.problems)

    async def login_problems(self) -> list[str]:
        async with translated(), self._pool.acquire() as conn:
            return await login_problems(conn)

    async def durability_problems(self) -> list[str]:
        async with translated():
            rows = await self._pool.fetch(QUERIES["durability_settings"])
            encoding = await self._pool.fetchval(QUERIES["server_encoding"])
        problems = [
            message for row in rows
            for unsafe, message in [_UNSAFE[row["name"]]] if row["setting"] == unsafe
        ]
        if encoding != "UTF8":
            problems.append(f"server encoding is {encoding}; canonlog hashes UTF-8 text")
        return problems
