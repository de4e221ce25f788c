"""`canonlog head | read | export`: what a ledger holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canonlog.infrastructure.cli.progress import Progress
from canonlog.infrastructure.cli.support import EXIT_OK, add_command, ledger_log, render
from canonlog.infrastructure.export import event_to_json, export_ledger
from canonlog.infrastructure.settings import Settings


async def cmd_head(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args, must_exist=True) as (log, ledger):
        head = await log.head(ledger)
    return render(args, {"ledger_id": head.ledger_id, "sequence": head.sequence,
                         "hash": head.hash.hex()},
                  f"{head.ledger_id} #{head.sequence} {head.hash.hex()}")


async def cmd_read(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args) as (log, ledger):
        if args.stream:
            events = await log.read_stream(ledger, args.stream, from_version=args.from_version,
                                           limit=args.limit)
        else:
            events = await log.read_all(ledger, after=args.after, limit=args.limit)
    for event in events:
        if args.json:
            print(event_to_json(event))
        else:
            print(f"#{event.sequence} {event.stream_id} v{event.stream_version} "
                  f"{event.event_type} {event.payload.decode()}")
    return EXIT_OK


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args, must_exist=True) as (log, ledger):
        head = await log.head(ledger)
        progress = Progress("exporting", head.sequence - args.after)
        if args.output == "-":
            count = await export_ledger(log, ledger, sys.stdout, after=args.after,
                                        progress=progress)
        else:
            # Blocking writes are fine here: this process does nothing else meanwhile.
            with Path(args.output).open("w", encoding="utf-8") as out:  # noqa: ASYNC230
                count = await export_ledger(log, ledger, out, after=args.after, progress=progress)
        progress.finish()
    print(f"exported {count} events of {ledger}", file=sys.stderr)
    return EXIT_OK


def register(sub: Any) -> None:
    """Adds head, read and export to the `canonlog` parser."""
    p = add_command(sub, "head", cmd_head, "the newest sequence and hash of a ledger")
    p.add_argument("--ledger")
    p = add_command(sub, "read", cmd_read, "events of a stream, or of the ledger after a sequence")
    p.add_argument("--ledger")
    p.add_argument("--stream")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--from-version", type=int, default=1)
    p.add_argument("--limit", type=int, default=100)
    p = add_command(sub, "export", cmd_export, "write the ledger as JSON Lines, streaming")
    p.add_argument("--ledger")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
