"""What every `canonlog` subcommand module shares: exit codes, registration, output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from canonlog.infrastructure.settings import Settings

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4

Handler = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def add_command(parent: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """Adds a subcommand whose handler runs with the settings and the parsed arguments."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text,
                                                        description=help_text)
    parser.set_defaults(handler=handler)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    return parser


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """Adds a group of subcommands (`canonlog NAME COMMAND`) and returns its subparsers."""
    group = parent.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
