"""An HTTP endpoint as a relay destination: events POSTed with an HMAC-signed body.

The body is ``{"events": [...]}`` with each event in the export format; the
headers carry the signature (canonlog.domain.webhook_signature), its timestamp,
and a delivery id naming the ledger and the sequences. Any 2xx answer confirms
the delivery; anything else, a timeout or a refused connection is a failure.
The receiver dedupes by each event's sequence.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from canonlog.domain.errors import DestinationError
from canonlog.domain.events import RecordedEvent
from canonlog.domain.webhook_signature import sign
from canonlog.infrastructure.export import event_to_json

SIGNATURE_HEADER = "X-Canonlog-Signature"
TIMESTAMP_HEADER = "X-Canonlog-Timestamp"
DELIVERY_HEADER = "X-Canonlog-Delivery"


def signed_request(secret: bytes, body: bytes, delivery_id: str, now: float | None = None
                   ) -> dict[str, str]:
    """Returns the headers that sign body as delivery_id at now (default: the clock)."""
    moment = int(time.time() if now is None else now)
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(moment),
            SIGNATURE_HEADER: sign(secret, moment, body), DELIVERY_HEADER: delivery_id}


class WebhookDestination:
    """Destination POSTing to one URL with a shared secret."""

    def __init__(self, url: str, secret: bytes, *, timeout: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        if not events:
            return
        body = ('{"events":[' + ",".join(event_to_json(e) for e in events) + "]}").encode()
        delivery = f"{events[0].ledger_id}:{events[0].sequence}-{events[-1].sequence}"
        try:
            response = await self._client.post(
                self._url, content=body, headers=signed_request(self._secret, body, delivery))
        except httpx.HTTPError as exc:
            raise DestinationError(f"webhook {self._url}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DestinationError(f"webhook {self._url} answered {response.status_code}: "
                                   f"{response.text[:200]}")

    async def close(self) -> None:
        await self._client.aclose()
