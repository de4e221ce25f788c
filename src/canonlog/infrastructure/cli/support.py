"""What every `canonlog` command shares: exit codes and the one mapping of errors to them,
registering a command, the ledger it works on, and JSON output.

A command returns EXIT_OK, EXIT_VERIFY_FAILED or EXIT_REFUSED after printing its
result, or raises; exit_status turns what it raised into an exit code and one line
on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from canonlog.application.ports import EventLog
from canonlog.domain.errors import (
    CanonlogError,
    ExportFormatError,
    StorageError,
    VerificationIncomplete,
)
from canonlog.infrastructure.bootstrap import open_event_log, open_governance_log
from canonlog.infrastructure.settings import Settings

#: 0 success; 1 verification found a problem; 2 usage error; 3 refused by canonlog
#: (halted, conflict, invalid input, schema problem); 4 the database or a file
#: could not be reached.
EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4

Handler = Callable[[Settings, argparse.Namespace], Awaitable[int]]


class CommandError(CanonlogError):
    """A command's own refusal (a missing setting, evidence that does not verify):
    its message goes to stderr as it is, and the command exits with exit_code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> CommandError:
    """The command cannot run as invoked (a setting or option is missing)."""
    return CommandError(message, EXIT_USAGE)


def exit_status(error: BaseException, failed_verification: tuple[type[CanonlogError], ...] = ()
                ) -> tuple[int, str] | None:
    """The exit code and stderr message for what a command raised, or None for a bug.

    failed_verification names the errors that mean, for this command, that
    evidence did not verify (exit 1) rather than that canonlog refused (exit 3).
    """
    if isinstance(error, CommandError):
        return error.exit_code, str(error)
    if isinstance(error, (StorageError, OSError)):
        return EXIT_UNAVAILABLE, str(error)
    if isinstance(error, ExportFormatError):
        return EXIT_VERIFY_FAILED, str(error)
    if isinstance(error, VerificationIncomplete):
        return EXIT_VERIFY_FAILED, f"{type(error).__name__}: {error}"
    if isinstance(error, CanonlogError):
        code = EXIT_VERIFY_FAILED if isinstance(error, failed_verification) else EXIT_REFUSED
        return code, f"{type(error).__name__}: {error}"
    return None


def add_command(parent: Any, name: str, handler: Handler, help_text: str, *,
                failed_verification: tuple[type[CanonlogError], ...] = ()
                ) -> argparse.ArgumentParser:
    """Adds a subcommand whose handler runs with the settings and the parsed arguments."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text,
                                                        description=help_text)
    parser.set_defaults(handler=handler, failed_verification=failed_verification)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    return parser


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """Adds a group of subcommands (`canonlog NAME COMMAND`) and returns its subparsers."""
    group = parent.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_ledger_and_actor(parser: argparse.ArgumentParser, *, actor: bool = True
                         ) -> argparse.ArgumentParser:
    """Adds --ledger and, unless actor is False, --actor (read by ledger_of and actor_of)."""
    parser.add_argument("--ledger", help="ledger id (default: CANONLOG_LEDGER or main)")
    if actor:
        parser.add_argument("--actor", help="who the chain records as acting "
                                            "(default: CANONLOG_ACTOR or the OS user)")
    return parser


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def render(args: argparse.Namespace, value: Any, text: str) -> int:
    """Prints value as JSON with --json, else text; returns EXIT_OK."""
    if args.json:
        print_json(value)
    else:
        print(text)
    return EXIT_OK


def ledger_of(settings: Settings, args: argparse.Namespace) -> str:
    """The ledger a command works on: --ledger, else CANONLOG_LEDGER."""
    return str(getattr(args, "ledger", None) or settings.ledger)


def actor_of(settings: Settings, args: argparse.Namespace) -> str:
    """Who the chain records as acting: --actor, else CANONLOG_ACTOR, else the OS user."""
    if args.actor:
        return str(args.actor)
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


def with_checkpoint_dir(settings: Settings, args: argparse.Namespace) -> Settings:
    """Settings with --checkpoint-dir applied, when it was given."""
    directory = getattr(args, "checkpoint_dir", None)
    return settings.model_copy(update={"checkpoint_dir": Path(directory)}) if directory else settings


@asynccontextmanager
async def ledger_log(settings: Settings, args: argparse.Namespace, *,
                     must_exist: bool = False) -> AsyncIterator[tuple[EventLog, str]]:
    """Yields the event log and the command's ledger, closing the log afterwards.

    With must_exist, raises LedgerNotFound before yielding when the ledger does not exist.
    """
    ledger = ledger_of(settings, args)
    async with open_event_log(settings) as (log, _):
        if must_exist:
            await log.ledger_state(ledger)
        yield log, ledger


@asynccontextmanager
async def governed_log(settings: Settings, args: argparse.Namespace, *, as_admin: bool = False
                       ) -> AsyncIterator[tuple[EventLog, str]]:
    """As ledger_log, connected as the operator login (with as_admin, the administrator)."""
    async with open_governance_log(settings, as_admin=as_admin) as log:
        yield log, ledger_of(settings, args)
