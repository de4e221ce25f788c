"""`canonlog relay run|status|pause|resume|dead-letters|replay` and `canonlog reconcile`.

Consumers are named in CANONLOG_RELAY_DESTINATIONS ('NAME=URL ...'); `relay run`
registers its consumer, takes the consumer's lease (waiting while another
process holds it) and delivers until interrupted, or with --once until caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from canonlog.application.ports import ReconcilableDestination
from canonlog.application.reconciliation import reconcile
from canonlog.application.relay import consumer_status, replay_dead_letters
from canonlog.domain.relay import DeliveryFailure, ReconciliationReport
from canonlog.infrastructure.bootstrap import open_relay
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    add_command,
    add_group,
    print_json,
    render,
    usage_error,
)
from canonlog.infrastructure.postgres.notifier import PostgresNotifier
from canonlog.infrastructure.settings import Settings


def failure_json(failure: DeliveryFailure) -> dict[str, Any]:
    return {"sequence": failure.sequence, "hash": failure.hash.hex(), "status": failure.status,
            "attempts": failure.attempts, "last_error": failure.last_error,
            "next_attempt_at": failure.next_attempt_at.isoformat()}


def report_json(report: ReconciliationReport) -> dict[str, Any]:
    return {"consumer": report.consumer, "checked_through": report.checked_through,
            "clean": report.clean, "missing": list(report.missing), "extra": list(report.extra),
            "altered": list(report.altered), "redelivered": report.redelivered,
            "expired_idempotency_records": report.expired_idempotency_records}


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    async with open_relay(settings) as relay:
        destination = await relay.destination(args.consumer)
        await relay.store.register(relay.consumer_settings(args.consumer))
        notifier = PostgresNotifier(relay.dsn)
        try:
            consumer = relay.consumer(args.consumer, destination, notifier)
            if args.once:
                synced = await consumer.drain()
                return render(args, {"consumer": args.consumer, "synced": synced},
                              f"{args.consumer}: {synced} events synced")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(signum, stop.set)
            await consumer.run(relay.lease(), stop)
        finally:
            await notifier.close()
            await destination.close()
    return EXIT_OK


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with open_relay(settings) as relay:
        names = [args.consumer] if args.consumer else \
            [state.name for state in await relay.store.consumers()]
        statuses = [await consumer_status(name, relay.log, relay.store) for name in names]
    if args.json:
        print_json([s.to_json() for s in statuses])
        return EXIT_OK
    for s in statuses:
        flag = " stopped: " + s.state.stopped if s.state.stopped else \
            (" paused" if s.state.paused else "")
        print(f"{s.state.name}: #{s.state.cursor_seq} of {s.head}, lag {s.lag_events} events "
              f"{s.lag_seconds:.1f} s, {s.failing} failing, {s.dead_letters} dead letters{flag}")
    return EXIT_OK


async def _pause(settings: Settings, args: argparse.Namespace, paused: bool) -> int:
    async with open_relay(settings) as relay:
        state = await relay.store.set_paused(args.consumer, paused)
    word = "paused" if state.paused else "resumed"
    return render(args, {"consumer": state.name, "paused": state.paused},
                  f"{state.name}: {word} at #{state.cursor_seq}")


async def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    return await _pause(settings, args, True)


async def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    return await _pause(settings, args, False)


async def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    async with open_relay(settings) as relay:
        letters = await relay.store.failures(args.consumer, dead_letters_only=not args.all)
    if args.json:
        print_json([failure_json(f) for f in letters])
        return EXIT_OK
    for f in letters:
        print(f"#{f.sequence} {f.status} after {f.attempts} attempts: {f.last_error}")
    return EXIT_OK


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    async with open_relay(settings) as relay:
        destination = await relay.destination(args.consumer)
        try:
            replayed = await replay_dead_letters(args.consumer, relay.log, relay.store,
                                                 destination, args.sequence or None)
        finally:
            await destination.close()
    return render(args, {"consumer": args.consumer, "replayed": replayed},
                  f"{args.consumer}: replayed {len(replayed)} dead letters")


async def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    async with open_relay(settings) as relay:
        destination = await relay.destination(args.consumer)
        try:
            if not isinstance(destination, ReconcilableDestination):
                raise usage_error(f"the destination of {args.consumer!r} cannot say what it "
                                  "holds (a webhook): it cannot be reconciled")
            report = await reconcile(args.consumer, relay.log, relay.store, destination,
                                     redeliver=not args.no_redeliver,
                                     idempotency=relay.idempotency)
        finally:
            await destination.close()
    render(args, report_json(report),
           f"{report.consumer}: checked through #{report.checked_through}: "
           f"missing {list(report.missing)}, extra {list(report.extra)}, altered "
           f"{list(report.altered)}; redelivered {report.redelivered}; "
           f"{report.expired_idempotency_records} expired idempotency records deleted")
    return EXIT_OK if not (report.extra or report.altered) else EXIT_VERIFY_FAILED


def register(sub: Any) -> None:
    """Adds `relay ...` and `reconcile` to the `canonlog` parser."""
    group = add_group(sub, "relay", "deliver the chain to secondary stores")
    p = add_command(group, "run", cmd_run, "run a consumer (one process per consumer)")
    p.add_argument("consumer")
    p.add_argument("--once", action="store_true", help="deliver until caught up, then exit")
    p = add_command(group, "status", cmd_status, "cursor, lag and failures of consumers")
    p.add_argument("consumer", nargs="?")
    for name, handler, text in (("pause", cmd_pause, "pause a consumer"),
                                ("resume", cmd_resume, "resume a paused or stopped consumer")):
        add_command(group, name, handler, text).add_argument("consumer")
    p = add_command(group, "dead-letters", cmd_dead_letters, "a consumer's dead letters")
    p.add_argument("consumer")
    p.add_argument("--all", action="store_true", help="also events still being retried")
    p = add_command(group, "replay", cmd_replay, "deliver dead letters again")
    p.add_argument("consumer")
    p.add_argument("--sequence", type=int, action="append", help="only this one (repeatable)")
    p = add_command(sub, "reconcile", cmd_reconcile,
                    "compare a consumer's destination with the chain and re-deliver the missing")
    p.add_argument("consumer")
    p.add_argument("--no-redeliver", action="store_true", help="only report")
