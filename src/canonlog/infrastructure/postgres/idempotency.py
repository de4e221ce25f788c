"""IdempotencyStore in PostgreSQL (canonlog.idempotency_records, the relay's role).

A store is one INSERT ... ON CONFLICT that replaces only an expired record, so
concurrent stores of one key serialise on its row: the first commits, the others
find it live and read it back.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from canonlog.domain.errors import StorageError
from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.relay_store import QUERIES


class PostgresIdempotencyStore:
    """IdempotencyStore on an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, key: str) -> Any | None:
        async with translated():
            text = await self._pool.fetchval(QUERIES["idempotency_get"], key)
        return None if text is None else orjson.loads(text)

    async def put_if_absent(self, key: str, result: Any, ttl: float) -> Any:
        document = orjson.dumps(result).decode("utf-8")
        for _ in range(3):
            async with translated():
                text = await self._pool.fetchval(QUERIES["idempotency_put"], key, document,
                                                 float(ttl))
                if text is None:
                    text = await self._pool.fetchval(QUERIES["idempotency_get"], key)
            if text is not None:
                return orjson.loads(text)
            # The live record expired between the two statements: store again.
        raise StorageError(f"the idempotency record {key!r} kept expiring while being stored")

    async def delete_expired(self) -> int:
        async with translated():
            status = await self._pool.execute(QUERIES["idempotency_delete_expired"])
        return int(status.split()[-1])
