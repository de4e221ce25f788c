"""The two-minute tour: append, read, verify, then tamper as a superuser and get caught."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from canonlog.application.chain_verification import verify_chain
from canonlog.domain.errors import CanonlogError, ConcurrencyConflict
from canonlog.domain.events import AppendRequest, NewEvent, StreamState, WriteContext
from canonlog.infrastructure.bootstrap import open_event_log
from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.queries import QUERIES, load_queries
from canonlog.infrastructure.settings import Settings

DEMO_QUERIES = load_queries(__package__, "demo.sql")

Say = Callable[[str], None]


async def run_demo(settings: Settings, say: Say) -> bool:
    """Runs the tour on a fresh ledger; returns True when the verifier caught the tampering."""
    ledger = "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    async with open_event_log(settings) as (log, connections):
        where = (f"embedded PostgreSQL in {connections.embedded.data_dir}"
                 if connections.embedded else "PostgreSQL at the configured DSN")
        version = await log.pool.fetchval(QUERIES["server_version"], column=1)
        say(f"canonlog demo on {where} (server {version})")
        grant = await log.acquire_grant(ledger, "demo-writer")
        say(f"  ledger {ledger}: writer {grant.writer_id} holds the grant at epoch {grant.epoch}")

        def context(execution: str) -> WriteContext:
            return WriteContext(task_id="demo", execution_id=execution, agent_id="demo-agent",
                                writer_time=datetime.now(UTC))

        placed = await log.append(grant, AppendRequest.create(
            "order-1", [NewEvent.create("order_placed", {"order": "order-1", "amount": 120,
                                                         "currency": "EUR"}),
                        NewEvent.create("order_confirmed", {"order": "order-1"})],
            expected_version=StreamState.NO_STREAM, context=context("place-order-1")))
        paid = await log.append(grant, AppendRequest.create(
            "order-1", [NewEvent.create("payment_received", {"order": "order-1", "amount": 120})],
            expected_version=2, context=context("pay-order-1")))
        await log.append(grant, AppendRequest.create(
            "customer-7", [NewEvent.create("customer_registered", {"name": "Zoë Ångström"})],
            context=context("register-7")))
        say("  appended 4 events; reading them back:")
        for event in await log.read_all(ledger, after=0, limit=100):
            say(f"    #{event.sequence:<3} {event.stream_id:<11} v{event.stream_version} "
                f"{event.event_type:<24} {event.hash.hex()[:16]}…")
        try:
            await log.append(grant, AppendRequest.create(
                "order-1", [NewEvent.create("order_placed", {"order": "order-1"})],
                expected_version=StreamState.NO_STREAM))
        except ConcurrencyConflict as exc:
            say(f"  a second 'order placed' expecting no stream is refused: {exc}")
        retry = await log.append(grant, AppendRequest.create(
            "order-1", [NewEvent.create("payment_received", {"order": "order-1", "amount": 120})],
            expected_version=2, context=context("pay-order-1")))
        say(f"  retrying execution pay-order-1 returns the original event "
            f"#{retry.events[0].sequence} (replayed: {retry.replayed}), no duplicate")

        report = await verify_chain(log, ledger)
        say(f"  verify: {report.summary()}")

        target = placed.events[0].sequence
        say(f"  tampering with #{target} (order_placed, amount 120 -> 1):")
        try:
            async with translated():
                await log.pool.execute(DEMO_QUERIES["demo_runtime_update"], ledger, target)
        except CanonlogError as exc:
            say(f"    the runtime role's UPDATE is refused: {exc}")
        admin = await asyncpg.connect(connections.admin_dsn)
        try:
            await admin.execute("SELECT set_config('canonlog.demo_ledger', $1, false),"
                                " set_config('canonlog.demo_seq', $2, false)", ledger, str(target))
            try:
                async with translated(), admin.transaction():
                    await admin.execute(DEMO_QUERIES["demo_owner_update"])
            except CanonlogError as exc:
                say(f"    the table owner's UPDATE is refused: {exc}")
            async with admin.transaction():
                await admin.execute(DEMO_QUERIES["demo_superuser_tamper"])
            say("    a superuser disables the trigger, rewrites the payload, re-enables it")
        finally:
            await admin.close()

        report = await verify_chain(log, ledger)
        say(f"  verify: {report.summary()}")
        caught = report.first_break is not None and report.first_break.sequence == target
        if caught and report.first_break is not None:
            say(f"    recomputed hash {report.first_break.expected}")
            say(f"    stored hash     {report.first_break.found}")
            say("  The independent verifier caught the superuser's edit at the exact event.")
            say(f"  ({report.breaks_total} problem(s); payment #{paid.events[0].sequence} "
                "and every other event still verify.)")
        return caught
