"""The `canonlog` command: thin commands that parse, call the application, and render.

One module per group of commands: db (db, dev, demo), serve, ledger (head, read, export),
verify, checkpoints (checkpoint ...), governance (halt, resume, failover), policy
(ledger init, ledger adopt-policy, policy ...), keys,
append, gateway (write ..., audit), sagas (saga ...), relay (relay ..., reconcile).
support holds the exit codes and the one mapping of errors to them.

Exit codes: 0 success; 1 verification found a problem; 2 usage error;
3 refused by canonlog (halted, conflict, invalid input, schema problem);
4 the database or a file could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from canonlog.infrastructure.bootstrap import configure_logging
from canonlog.infrastructure.cli import (
    append,
    checkpoints,
    db,
    gateway,
    governance,
    keys,
    ledger,
    policy,
    relay,
    sagas,
    serve,
    verify,
)
from canonlog.infrastructure.cli.support import EXIT_OK, exit_status, usage_error
from canonlog.infrastructure.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canonlog",
        description="Tamper-evident, append-only event log on PostgreSQL.",
        epilog="Connection: CANONLOG_DSN / --dsn (a URI; 'postgresql://' uses PGHOST and "
               "friends); unset runs the embedded PostgreSQL in CANONLOG_DATA_DIR (.canonlog). "
               "Exit codes: 0 ok, 1 verification failed, 2 usage, 3 refused, 4 unavailable.",
    )
    parser.add_argument("--dsn", help="runtime connection URI (default: embedded)")
    parser.add_argument("--admin-dsn", help="connection for migrations and policy genesis "
                                            "(default: --dsn)")
    parser.add_argument("--operator-dsn", help="the operator login, for governance commands "
                                               "(embedded: canonlog_ops)")
    parser.add_argument("--data-dir", help="embedded server directory (default: .canonlog)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `canonlog --help` lists them.
    for group in (db, serve, ledger, policy, verify, checkpoints, governance, keys, append,
                  gateway, sagas, relay):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        configure_logging(settings.model_copy(update={"log_level": "warning"})
                          if not args.json and settings.log_level == "info" else settings)
        code: int = asyncio.run(args.handler(settings, args))
    except KeyboardInterrupt:
        return EXIT_OK if args.command in ("dev", "serve") else 130
    except Exception as exc:
        status = exit_status(exc, args.failed_verification)
        if status is None:
            raise
        print(f"canonlog: {status[1]}", file=sys.stderr)
        return status[0]
    return code


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {key: value for key, value in (("dsn", args.dsn), ("admin_dsn", args.admin_dsn),
                                               ("operator_dsn", args.operator_dsn),
                                               ("data_dir", args.data_dir)) if value}
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise usage_error(f"invalid settings: {exc}") from exc
