"""canonlog over HTTP: the FastAPI service hosting a ledger's canonical writer."""

from canonlog.infrastructure.http.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
