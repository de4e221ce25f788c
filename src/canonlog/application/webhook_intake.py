"""Webhook intake: a signed delivery from outside recorded as a chained event, at once.

receive() checks the sender's signature and its age, answers a delivery id it has
seen from the IdempotencyService, and otherwise appends a ``webhook.received``
event to the stream ``webhook-<source>`` with ``webhook:<source>:<delivery id>``
as the execution id, so that even concurrent duplicates produce one event. Work
on the delivery happens later, in a relay consumer of those events
(WebhookProcessing), and its progress is that consumer's sync status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from canonlog.application.idempotency import IdempotencyService
from canonlog.application.ports import EventStore, RelayStore
from canonlog.domain.canonical import parse_json
from canonlog.domain.errors import InvalidEvent
from canonlog.domain.events import NewEvent, RecordedEvent
from canonlog.domain.relay import SyncStatus, status_of
from canonlog.domain.webhook_signature import verify

#: The event type of a recorded delivery.
DELIVERY_EVENT = "webhook.received"
#: The relay consumer that processes recorded deliveries.
INTAKE_CONSUMER = "webhook-intake"

#: What processes one recorded delivery: its source, delivery id and parsed body.
#: It may run more than once for a delivery (at least once), so it must be idempotent
#: by the delivery id.
WebhookHandler = Callable[[str, str, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IntakeReceipt:
    """A recorded delivery: its event's sequence, and whether it was seen before."""

    source: str
    delivery_id: str
    sequence: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """How far processing of a recorded delivery is."""

    source: str
    delivery_id: str
    sequence: int
    status: SyncStatus
    attempts: int
    last_error: str | None


def _check_id(value: str, what: str) -> None:
    if not 1 <= len(value) <= 200 or not value.isprintable() or ":" in value:
        raise InvalidEvent(f"{what} must be 1 to 200 printable characters without ':'")


def _key(source: str, delivery_id: str) -> str:
    return f"webhook:{source}:{delivery_id}"


class WebhookIntake:
    """Records signed deliveries from one shared secret's senders."""

    def __init__(self, events: EventStore, idempotency: IdempotencyService, relay: RelayStore,
                 secret: bytes, *, replay_window: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("webhook intake needs a secret")
        self._events = events
        self._idempotency = idempotency
        self._relay = relay
        self._secret = secret
        self._window = replay_window
        self._clock = clock

    async def receive(self, source: str, delivery_id: str, signature: str | None,
                      timestamp: str | None, body: bytes) -> IntakeReceipt:
        """Verifies and records a delivery. Raises WebhookRejected (bad or missing
        signature, timestamp outside the replay window) or InvalidEvent (ids or body
        malformed), recording nothing; a delivery id seen before answers its receipt."""
        verify(self._secret, signature, timestamp, body, now=self._clock(),
               window=self._window)
        _check_id(source, "the source")
        _check_id(delivery_id, "the delivery id")
        key = _key(source, delivery_id)
        seen = await self._idempotency.check(key)
        if seen is not None:
            return IntakeReceipt(source, delivery_id, int(seen["sequence"]), True)
        payload = {"source": source, "delivery_id": delivery_id,
                   "body": parse_json(body, "webhook body")}
        result = await self._events.append(f"webhook-{source}",
                                           [NewEvent.create(DELIVERY_EVENT, payload)],
                                           execution_id=key)
        sequence = result.events[0].sequence
        stored = await self._idempotency.store(key, {"sequence": sequence})
        return IntakeReceipt(source, delivery_id, int(stored["sequence"]), result.replayed)

    async def status(self, source: str, delivery_id: str) -> DeliveryStatus | None:
        """Returns the delivery's processing status, or None for a delivery not known
        (or whose idempotency record expired)."""
        seen = await self._idempotency.check(_key(source, delivery_id))
        if seen is None:
            return None
        sequence = int(seen["sequence"])
        state = await self._relay.consumer(INTAKE_CONSUMER)
        failure = next((f for f in await self._relay.failures(INTAKE_CONSUMER)
                        if f.sequence == sequence), None)
        return DeliveryStatus(source, delivery_id, sequence,
                              status_of(sequence, state.cursor_seq, failure),
                              failure.attempts if failure else 0,
                              failure.last_error if failure else None)


class WebhookProcessing:
    """The Destination of the intake consumer: hands each recorded delivery to the
    handler, in sequence order, and passes over every other event."""

    def __init__(self, handler: WebhookHandler) -> None:
        self._handler = handler

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if event.event_type != DELIVERY_EVENT or not event.stream_id.startswith("webhook-"):
                continue
            payload = parse_json(event.payload, "webhook event")
            await self._handler(payload["source"], payload["delivery_id"], payload["body"])

    async def close(self) -> None:
        pass

