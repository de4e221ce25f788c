"""Routes of the relay: consumers' status, webhook intake, and each delivery's status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel

from canonlog.application.relay import consumer_status
from canonlog.domain.errors import ConsumerNotFound
from canonlog.infrastructure.destinations.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from canonlog.infrastructure.http.errors import ApiError
from canonlog.infrastructure.http.relay_runtime import RelayRuntime
from canonlog.infrastructure.http.routes_ledger import Reader, errors

Name = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^:]+$")]


class CursorOut(BaseModel):
    sequence: int
    hash: str | None


class ConsumerOut(BaseModel):
    """A consumer's cursor against the head, its lag, failures and flags."""

    consumer: str
    ledger_id: str
    cursor: CursorOut
    head: int
    lag_events: int
    lag_seconds: float
    failing: int
    dead_letters: int
    paused: bool
    stopped: str | None
    poison_policy: str
    max_attempts: int
    synced_at: str | None


class ConsumerList(BaseModel):
    consumers: list[ConsumerOut]


class IntakeOut(BaseModel):
    """A recorded delivery: the sequence of its event, and whether it was seen before."""

    source: str
    delivery_id: str
    sequence: int
    duplicate: bool
    status_url: str


class DeliveryOut(BaseModel):
    """How far processing of a delivery is: pending, synced, failed or dead_letter."""

    source: str
    delivery_id: str
    sequence: int
    status: str
    attempts: int
    last_error: str | None


def relay_runtime(request: Request) -> RelayRuntime:
    runtime: RelayRuntime | None = getattr(request.app.state, "relay", None)
    if runtime is None:
        raise ApiError(503, "relay_not_configured", "the relay is not configured in this service "
                       "(CANONLOG_RELAY_DESTINATIONS or CANONLOG_WEBHOOK_INTAKE_SECRET)")
    return runtime


Relay = Annotated[RelayRuntime, Depends(relay_runtime)]
router = APIRouter(prefix="/v1", responses=errors(401, 403, 422, 503))


@router.get("/relay/consumers", response_model=ConsumerList, summary="Every relay consumer")
async def consumers(relay: Relay, principal: Reader) -> dict[str, Any]:
    wiring = relay.wiring
    return {"consumers": [(await consumer_status(s.name, wiring.log, wiring.store)).to_json()
                          for s in await wiring.store.consumers()]}


@router.get("/relay/consumers/{name}", response_model=ConsumerOut,
            summary="A relay consumer's status", responses=errors(404))
async def consumer(name: Name, relay: Relay, principal: Reader) -> dict[str, Any]:
    try:
        status = await consumer_status(name, relay.wiring.log, relay.wiring.store)
    except ConsumerNotFound as exc:
        raise ApiError(404, "consumer_not_found", str(exc)) from exc
    return status.to_json()


@router.post("/webhooks/{source}", status_code=202, response_model=IntakeOut,
             summary="Receive a signed webhook delivery", responses=errors(409, 413))
async def receive(source: Name, request: Request, response: Response, relay: Relay,
                  signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
                  timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER)] = None,
                  delivery_id: Annotated[str | None, Header(alias=DELIVERY_HEADER)] = None,
                  ) -> IntakeOut:
    """Authenticated by the sender's HMAC signature, not a token: the body signed with the
    shared secret at the timestamp, within the replay window. Records the delivery as a
    chained event and answers 202; a delivery id seen before answers its first receipt."""
    if relay.intake is None:
        raise ApiError(503, "intake_not_configured",
                       "webhook intake needs CANONLOG_WEBHOOK_INTAKE_SECRET")
    if not delivery_id:
        raise ApiError(422, "invalid_request", f"the {DELIVERY_HEADER} header is missing")
    receipt = await relay.intake.receive(source, delivery_id, signature, timestamp,
                                         await request.body())
    url = f"/v1/webhooks/{source}/deliveries/{delivery_id}"
    response.headers["Location"] = url
    return IntakeOut(source=source, delivery_id=delivery_id, sequence=receipt.sequence,
                     duplicate=receipt.duplicate, status_url=url)


@router.get("/webhooks/{source}/deliveries/{delivery_id}", response_model=DeliveryOut,
            summary="A delivery's processing status", responses=errors(404))
async def delivery(source: Name, delivery_id: Name, relay: Relay,
                   principal: Reader) -> DeliveryOut:
    if relay.intake is None:
        raise ApiError(503, "intake_not_configured",
                       "webhook intake needs CANONLOG_WEBHOOK_INTAKE_SECRET")
    status = await relay.intake.status(source, delivery_id)
    if status is None:
        raise ApiError(404, "delivery_not_found",
                       f"no delivery {delivery_id!r} from {source!r} is known")
    return DeliveryOut(source=status.source, delivery_id=status.delivery_id,
                       sequence=status.sequence, status=status.status,
                       attempts=status.attempts, last_error=status.last_error)
