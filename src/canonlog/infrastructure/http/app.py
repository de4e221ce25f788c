"""The HTTP service: a FastAPI application hosting the canonical writer of one ledger.

The application's lifespan opens the ledger through the composition root (the
same verified writer the in-process API and the CLI use) and stops it when the
server shuts down; routes are thin calls into LedgerService.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from os import PathLike
from typing import Final

import structlog
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from canonlog.application.client import LedgerClient
from canonlog.application.ports import GovernedLedger
from canonlog.domain.errors import OperatorLoginMissing
from canonlog.infrastructure.http import (
    routes_ceremonies,
    routes_gateway,
    routes_ledger,
    routes_operations,
    routes_relay,
    routes_sagas,
    routes_tail,
)
from canonlog.infrastructure.http.auth import AuthConfig, AuthConfigError, Authenticator
from canonlog.infrastructure.http.authz import PolicyAuthorizer
from canonlog.infrastructure.http.ceremonies import LedgerCeremonies
from canonlog.infrastructure.http.errors import install_error_handlers
from canonlog.infrastructure.http.metrics import ServiceMetrics
from canonlog.infrastructure.http.middleware import RequestContextMiddleware
from canonlog.infrastructure.http.relay_runtime import relay_configured, relay_runtime
from canonlog.infrastructure.http.sagas import open_saga_service
from canonlog.infrastructure.http.service import CheckpointSource, LedgerService
from canonlog.infrastructure.settings import Settings

log = structlog.get_logger("canonlog.http")

#: Opens the ledger the service hosts: the composition root's open_ledger, or a test's.
LedgerOpener = Callable[[Settings], AbstractAsyncContextManager[LedgerClient]]
#: Opens the operator's connection, which proposals and approvals run on; raises
#: OperatorLoginMissing when none is configured.
GovernanceOpener = Callable[[Settings], AbstractAsyncContextManager[GovernedLedger]]


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How the service listens and whom it serves."""

    host: str = "127.0.0.1"
    port: int = 8080
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: Bodies larger than this are refused with a 413 before they are read in full.
    max_body_bytes: int = 4 * 1024 * 1024
    checkpoints: CheckpointSource | None = None
    #: Decides every authenticated request by a Rego policy; None: scopes alone decide.
    authorizer: PolicyAuthorizer | None = None

    def __post_init__(self) -> None:
        if not self.auth.required and not is_loopback(self.host):
            raise AuthConfigError(
                f"authentication can be off only on a loopback address, not on {self.host!r}")


#: The operator's view runs only its own files and talks only to this service; the
#: bearer token an operator pastes never leaves for another origin.
_VIEW_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class OperatorView(StaticFiles):
    """The operator's view: the static files shipped in the package, with headers that keep
    the page to its own scripts and this service."""

    def __init__(self) -> None:
        super().__init__(packages=[("canonlog.infrastructure.http", "ui")], html=True)

    def file_response(self, full_path: PathLike[str] | str, stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_VIEW_HEADERS)
        return response


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings, config: ServiceConfig, *,
               open_ledger: LedgerOpener | None = None,
               open_governance: GovernanceOpener | None = None) -> FastAPI:
    """Builds the application; the ledger opens when the server starts it (lifespan).

    open_ledger and open_governance default to the composition root's; the writer is
    verified and accepting before the server takes its first request, and stopped on
    shutdown.
    """
    if open_ledger is None:
        from canonlog.infrastructure.bootstrap import open_ledger as default_opener

        open_ledger = default_opener
    if open_governance is None:
        from canonlog.infrastructure.bootstrap import open_governance_log

        open_governance = open_governance_log
    opener, governance = open_ledger, open_governance
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.authorizer is not None:
            log.info("authorization by policy", policy=config.authorizer.name,
                     policy_digest=config.authorizer.digest)
        if not config.auth.required:
            log.warning("authentication is OFF: every request acts with every scope; "
                        "allowed only because the service listens on loopback", host=config.host)
        async with opener(settings) as client, AsyncExitStack() as stack:
            governed: GovernedLedger | None = None
            try:
                governed = await stack.enter_async_context(governance(settings))
            except OperatorLoginMissing:
                log.warning("no operator login: ceremonies are served, but proposals and "
                            "approvals are refused until CANONLOG_OPERATOR_DSN is set")
            service = LedgerService(client, metrics, writer_id=settings.writer_id,
                                    checkpoints=config.checkpoints, limits=settings.limits)
            app.state.relay = await stack.enter_async_context(
                relay_runtime(settings, client, metrics))
            app.state.service = service
            app.state.ceremonies = LedgerCeremonies(client.event_log, governed, client.ledger_id)
            if settings.gateway_policy_file is not None:
                from canonlog.infrastructure.bootstrap import start_gateway

                app.state.gateway = await start_gateway(settings, client.writer,
                                                        client.event_log)
            app.state.sagas = await stack.enter_async_context(
                open_saga_service(settings, client, metrics))
            log.info("service ready", ledger_id=client.ledger_id, host=config.host,
                     port=config.port, auth_required=config.auth.required)
            try:
                yield
            finally:
                await service.close()

    app = FastAPI(
        title="canonlog",
        summary="A tamper-evident, append-only event log with a single canonical writer.",
        version="1",
        lifespan=lifespan,
    )
    app.state.authenticator = Authenticator(config.auth)
    app.state.authorizer = config.authorizer
    app.state.ledger_id = settings.ledger
    install_error_handlers(app)
    routers = [(routes_ledger.router, "ledger"), (routes_tail.router, "ledger"),
               (routes_ceremonies.router, "ceremonies"), (routes_operations.router, "operations"),
               (routes_gateway.router, "gateway"), (routes_sagas.router, "sagas"),
               (routes_operations.health, "health")]
    if relay_configured(settings):
        routers.append((routes_relay.router, "relay"))
    for router, tag in routers:
        app.include_router(router, tags=[tag])
    app.state.api_routes = [r for router, _ in routers for r in router.routes
                            if isinstance(r, APIRoute)]
    # The operator's view: static files calling the API above.
    app.mount("/ui", OperatorView(), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.add_middleware(RequestContextMiddleware, metrics=metrics,
                       max_body_bytes=config.max_body_bytes)
    return app
