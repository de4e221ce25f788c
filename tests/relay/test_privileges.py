"""The relay's tables with the least privileges that work: the application's login
moves cursors and stores idempotency records, yet still cannot change the chain or
delete a consumer; readers and operators only read the relay's state."""

from __future__ import annotations

import asyncpg
import pytest

from canonlog.domain.relay import ConsumerSettings
from tests.relay.conftest import LEDGER


async def test_the_app_login_cannot_delete_consumers_or_touch_events(database, ledger, store):
    await store.register(ConsumerSettings("c", LEDGER))
    conn = await asyncpg.connect(database.app.uri())
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM canonlog.relay_consumers")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE canonlog.events SET seq = seq")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE canonlog.relay_failures")
    finally:
        await conn.close()


async def test_the_operator_reads_relay_state_but_cannot_move_a_cursor(database, store):
    await store.register(ConsumerSettings("c", LEDGER))
    conn = await asyncpg.connect(database.operator.uri())
    try:
        assert await conn.fetchval("SELECT count(*) FROM canonlog.relay_consumers") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE canonlog.relay_consumers SET cursor_seq = 0")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT * FROM canonlog.idempotency_records")
    finally:
        await conn.close()
