"""Running the service under uvicorn, as `canonlog serve` does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from canonlog.application.client import LedgerClient
from canonlog.infrastructure.http.app import ServiceConfig, create_app
from canonlog.infrastructure.settings import Settings

_GRACEFUL_SHUTDOWN_SECONDS = 10


def service_urls(config: ServiceConfig) -> dict[str, str]:
    """Where the API, its interactive docs, its OpenAPI document, the operator's view and the
    probes are."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{config.port}"
    return {"api": f"{base}/v1", "docs": f"{base}/docs", "operator": f"{base}/ui/",
            "openapi": f"{base}/openapi.json", "health": f"{base}/healthz",
            "readiness": f"{base}/readyz", "metrics": f"{base}/metrics"}


async def serve(settings: Settings, config: ServiceConfig,
                announce: Callable[[str], None] = print) -> None:
    """Serves until interrupted (SIGINT or SIGTERM stop it cleanly, the writer included).

    The ledger is opened before the port is: a writer that cannot start (lease
    held elsewhere, verification failed, database unreachable) raises its error
    here, and nothing listens. announce receives one line per address once the
    server accepts connections.
    """
    from canonlog.infrastructure.bootstrap import open_ledger

    async with open_ledger(settings) as client:

        @asynccontextmanager
        async def already_open(_: Settings) -> AsyncIterator[LedgerClient]:
            yield client

        await _serve(create_app(settings, config, open_ledger=already_open), config, announce)


async def _serve(app: FastAPI, config: ServiceConfig, announce: Callable[[str], None]) -> None:
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, lifespan="on", log_config=None, ws="wsproto",
        access_log=False, server_header=False, proxy_headers=False,
        # Live tails never end on their own; they get this long to drain on shutdown.
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    ))

    # uvicorn marks the server started once the lifespan (and so the writer's
    # startup verification) has finished and the socket is bound; it offers a flag only.
    async def announce_when_started() -> None:
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for name, url in service_urls(config).items():
            announce(f"{name:<10} {url}")

    announcer = asyncio.create_task(announce_when_started())
    try:
        await server.serve()
    finally:
        announcer.cancel()
