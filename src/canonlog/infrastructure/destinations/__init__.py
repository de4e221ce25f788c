"""Relay destinations: adapters of the Destination port, one module each.

``open_destination`` builds one from a URL: ``postgresql://`` (a projection table
in another database), ``redis://`` or ``valkey://`` (a stream), ``http://`` or
``https://`` (a signed webhook), ``file://`` (a JSON Lines file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from canonlog.application.ports import Destination
from canonlog.domain.errors import InvalidConsumer


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """What a URL cannot say: the webhook's secret and every destination's timeout."""

    webhook_secret: bytes = b""
    timeout: float = 10.0


async def open_destination(url: str, options: DestinationOptions | None = None) -> Destination:
    """Returns the destination the URL names; raises InvalidConsumer for an unknown
    scheme or a webhook without a secret."""
    options = options or DestinationOptions()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from canonlog.infrastructure.destinations.postgres import PostgresProjection
        return await PostgresProjection.connect(url, timeout=options.timeout)
    if scheme in ("redis", "rediss", "valkey"):
        from canonlog.infrastructure.destinations.redis_stream import RedisStreamDestination
        query = parse_qs(parts.query)
        stream = query.pop("stream", ["canonlog:events"])[0]
        rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
        server = urlunsplit(("redis" if scheme == "valkey" else scheme, parts.netloc,
                             parts.path, rest, ""))
        return RedisStreamDestination(server, stream, timeout=options.timeout)
    if scheme in ("http", "https"):
        from canonlog.infrastructure.destinations.webhook import WebhookDestination
        if not options.webhook_secret:
            raise InvalidConsumer("a webhook destination needs a secret to sign with")
        return WebhookDestination(url, options.webhook_secret, timeout=options.timeout)
    if scheme == "file":
        from canonlog.infrastructure.destinations.jsonl import JsonLinesDestination
        return JsonLinesDestination(Path(parts.path))
    raise InvalidConsumer(f"no destination for URL scheme {parts.scheme!r} "
                     "(postgresql, redis, valkey, http, https, file)")
