"""`canonlog serve`: the HTTP service, hosting the ledger's canonical writer."""

from __future__ import annotations

import argparse
from typing import Any

from canonlog.infrastructure.bootstrap import service_config
from canonlog.infrastructure.cli.support import EXIT_OK, add_command, usage_error
from canonlog.infrastructure.settings import Settings


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from canonlog.infrastructure.http.auth import AuthConfigError
    from canonlog.infrastructure.http.server import serve

    updates: dict[str, Any] = {key: value for key, value in (
        ("http_host", args.host), ("http_port", args.port), ("ledger", args.ledger))
        if value is not None}
    if args.no_auth:
        updates["auth_required"] = False
    settings = Settings.model_validate({**settings.model_dump(), **updates})
    try:
        config = service_config(settings)
    except AuthConfigError as exc:
        raise usage_error(str(exc)) from exc
    await serve(settings, config, announce=lambda line: print(line, flush=True))
    return EXIT_OK


def register(sub: Any) -> None:
    """Adds serve to the `canonlog` parser."""
    parser = add_command(sub, "serve", cmd_serve,
                         "serve the ledger over HTTP (API, docs, health, metrics) until stopped")
    parser.add_argument("--host", help="address to listen on (default: CANONLOG_HTTP_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: CANONLOG_HTTP_PORT, 8080)")
    parser.add_argument("--ledger", help="ledger id (default: CANONLOG_LEDGER or main)")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve without authentication (a loopback address only)")
