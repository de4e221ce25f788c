"""The `canonlog` command: thin parsing around application functions.

Exit codes: 0 success; 1 verification found a problem; 2 usage error;
3 refused by canonlog (halted, conflict, invalid input, schema problem);
4 the database or a file could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from canonlog.application.verifier import ChainReport, verify_chain
from canonlog.domain.errors import CanonlogError, ExportFormatError, StorageError
from canonlog.infrastructure.bootstrap import configure_logging, open_event_log, prepare_database
from canonlog.infrastructure.cli_checkpoints import checkpoints_enabled, verify_with_checkpoints
from canonlog.infrastructure.cli_checkpoints import register as register_checkpoints
from canonlog.infrastructure.cli_governance import register as register_governance
from canonlog.infrastructure.cli_support import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    Handler,
    add_command,
    add_group,
    print_json,
)
from canonlog.infrastructure.export import event_to_json, export_ledger, verify_export
from canonlog.infrastructure.postgres.asyncpg_log import translated
from canonlog.infrastructure.postgres.migrations import applied_migrations, check_schema
from canonlog.infrastructure.progress import Progress
from canonlog.infrastructure.settings import Settings

_print_json = print_json


def _report_json(report: ChainReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "ledger_id": report.ledger_id,
        "events_checked": report.events_checked,
        "last_sequence": report.last_sequence,
        "head_hash": report.head_hash.hex(),
        "breaks_total": report.breaks_total,
        "breaks": [
            {"sequence": b.sequence, "kind": b.kind, "message": b.message,
             "expected": b.expected, "found": b.found} for b in report.breaks
        ],
    }


def _show_report(report: ChainReport, as_json: bool) -> int:
    if as_json:
        _print_json(_report_json(report))
    else:
        print(report.summary())
        for item in report.breaks[:10]:
            line = f"  #{item.sequence} {item.kind}: {item.message}"
            if item.expected is not None:
                line += f" (expected {item.expected}, found {item.found})"
            print(line)
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from canonlog.infrastructure.demo import run_demo

    caught = await run_demo(settings, print)
    return EXIT_OK if caught else EXIT_VERIFY_FAILED


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    connections = await prepare_database(settings.model_copy(update={"dsn": None}))
    assert connections.embedded is not None
    info = {"data_dir": str(connections.embedded.data_dir), "dsn": connections.dsn,
            "admin_dsn": connections.admin_dsn}
    if args.json:
        _print_json(info)
    else:
        print(f"embedded PostgreSQL running in {info['data_dir']}")
        print(f"  runtime role: {info['dsn']}")
        print(f"  superuser:    {info['admin_dsn']}")
        print("press Ctrl-C to stop it", flush=True)
    await asyncio.Event().wait()
    return EXIT_OK


async def _admin(settings: Settings) -> asyncpg.Connection:
    connections = await prepare_database(settings)
    async with translated():
        return await asyncpg.connect(connections.admin_dsn or connections.dsn)


async def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    conn = await _admin(settings.model_copy(update={"migrate_on_start": True}))
    try:
        applied = await applied_migrations(conn)
    finally:
        await conn.close()
    if args.json:
        _print_json({"applied": [m.version for m in applied]})
    else:
        print(f"schema up to date: {len(applied)} migration(s) applied")
    return EXIT_OK


async def cmd_db_status(settings: Settings, args: argparse.Namespace) -> int:
    conn = await _admin(settings.model_copy(update={"migrate_on_start": False}))
    try:
        applied = await applied_migrations(conn)
        report = await check_schema(conn)
    finally:
        await conn.close()
    if args.json:
        _print_json({"applied": [{"version": m.version, "name": m.name, "checksum": m.checksum,
                                  "applied_at": m.applied_at} for m in applied],
                     "integrity_ok": report.ok, "problems": list(report.problems)})
    else:
        for m in applied:
            print(f"  {m.version:04d}_{m.name}  {m.checksum[:12]}  {m.applied_at:%Y-%m-%d %H:%M}")
        print(f"integrity: {'ok' if report.ok else 'PROBLEMS'} ({report.triggers_checked} "
              f"triggers, {report.functions_checked} functions checked)")
        for problem in report.problems:
            print(f"  - {problem}")
    return EXIT_OK if report.ok else EXIT_REFUSED


async def cmd_head(settings: Settings, args: argparse.Namespace) -> int:
    async with open_event_log(settings) as (log, _):
        await log.ledger_state(args.ledger or settings.ledger)
        head = await log.head(args.ledger or settings.ledger)
    if args.json:
        _print_json({"ledger_id": head.ledger_id, "sequence": head.sequence,
                     "hash": head.hash.hex()})
    else:
        print(f"{head.ledger_id} #{head.sequence} {head.hash.hex()}")
    return EXIT_OK


async def cmd_read(settings: Settings, args: argparse.Namespace) -> int:
    ledger = args.ledger or settings.ledger
    async with open_event_log(settings) as (log, _):
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
    ledger = args.ledger or settings.ledger
    async with open_event_log(settings) as (log, _):
        await log.ledger_state(ledger)
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


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.export:
        progress = Progress("verifying export")
        report = verify_export(Path(args.export), progress=progress)
        progress.finish()
        return _show_report(report, args.json)
    if checkpoints_enabled(settings, args):
        return await verify_with_checkpoints(settings, args, _show_report, _report_json)
    ledger = args.ledger or settings.ledger
    async with open_event_log(settings) as (log, _):
        await log.ledger_state(ledger)
        head = await log.head(ledger)
        progress = Progress("verifying", head.sequence)
        report = await verify_chain(log, ledger, until=args.until, progress=progress)
        progress.finish()
    return _show_report(report, args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canonlog",
        description="Tamper-evident, append-only event log on PostgreSQL.",
        epilog="Connection: CANONLOG_DSN / --dsn (a URI; 'postgresql://' uses PGHOST and "
               "friends); unset runs the embedded PostgreSQL in CANONLOG_DATA_DIR (.canonlog). "
               "Exit codes: 0 ok, 1 verification failed, 2 usage, 3 refused, 4 unavailable.",
    )
    parser.add_argument("--dsn", help="runtime connection URI (default: embedded)")
    parser.add_argument("--admin-dsn", help="connection for migrations (default: --dsn)")
    parser.add_argument("--data-dir", help="embedded server directory (default: .canonlog)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, parent: Any = sub
                ) -> argparse.ArgumentParser:
        return add_command(parent, name, handler, help_text)

    command("demo", cmd_demo, "append, read, verify, tamper as a superuser, catch it")
    command("dev", cmd_dev,
            "run the embedded PostgreSQL until Ctrl-C, printing its connection strings")
    db_sub = add_group(sub, "db", "schema migrations and integrity")
    command("upgrade", cmd_db_upgrade, "apply pending migrations", db_sub)
    command("status", cmd_db_status, "applied migrations and the schema integrity report", db_sub)
    p = command("head", cmd_head, "the newest sequence and hash of a ledger")
    p.add_argument("--ledger")
    p = command("read", cmd_read, "events of a stream, or of the ledger after a sequence")
    p.add_argument("--ledger")
    p.add_argument("--stream")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--from-version", type=int, default=1)
    p.add_argument("--limit", type=int, default=100)
    p = command("export", cmd_export, "write the ledger as JSON Lines, streaming")
    p.add_argument("--ledger")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    p = command("verify", cmd_verify,
                "recompute every hash and name the first broken link (database or export)")
    p.add_argument("--ledger")
    p.add_argument("--until", type=int, help="verify up to this sequence only")
    p.add_argument("--export", help="verify this JSON Lines export, with no database")
    p.add_argument("--full", action="store_true",
                   help="verify the whole chain, not only from the newest trusted checkpoint")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="check the chain alone, not against signed checkpoints")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
    register_checkpoints(sub)
    register_governance(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in (("dsn", args.dsn), ("admin_dsn", args.admin_dsn),
                                               ("data_dir", args.data_dir)) if value}
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        print(f"canonlog: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.model_copy(update={"log_level": "warning"})
                      if not args.json and settings.log_level == "info" else settings)
    try:
        code: int = asyncio.run(args.handler(settings, args))
    except (StorageError, OSError) as exc:
        print(f"canonlog: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ExportFormatError as exc:
        print(f"canonlog: {exc}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    except CanonlogError as exc:
        print(f"canonlog: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "dev" else 130
    return code
