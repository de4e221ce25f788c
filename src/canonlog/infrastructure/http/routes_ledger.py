"""Routes of the ledger itself: append, read, head, state, halt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from canonlog.domain.canonical import INT_MAX
from canonlog.infrastructure.http.auth import Principal, requires
from canonlog.infrastructure.http.errors import ApiError
from canonlog.infrastructure.http.models import (
    AppendIn,
    AppendReceipt,
    ErrorOut,
    EventOut,
    EventPage,
    HaltIn,
    HaltOut,
    HeadOut,
    LedgerStateOut,
    StreamPage,
)
from canonlog.infrastructure.http.service import LedgerService
from canonlog.infrastructure.http.strict_json import StrictJsonRoute

#: The most events one read returns.
MAX_PAGE = 1000


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all in the standard error body."""
    return {status: {"model": ErrorOut} for status in statuses}


def ledger_service(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.service
    return service


Service = Annotated[LedgerService, Depends(ledger_service)]
Reader = Annotated[Principal, Depends(requires("read"))]
Appender = Annotated[Principal, Depends(requires("append"))]
Operator = Annotated[Principal, Depends(requires("operate"))]
StreamId = Annotated[str, Path(min_length=1, description="the stream's id (may contain '/')")]

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute, responses=errors(401, 403, 404, 422))


@router.post(
    "/streams/{stream_id:path}/events", status_code=201, response_model=AppendReceipt,
    summary="Append events to a stream",
    responses={200: {"model": AppendReceipt, "description": "a retry: the original receipt"},
               **errors(400, 409, 413, 503)},
)
async def append(
    stream_id: StreamId, body: AppendIn, service: Service, principal: Appender, response: Response,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=256,
        description="the execution id: a retry with the same key and body returns the original "
                    "receipt; with another body it is a 409")] = None,
) -> AppendReceipt:
    """Appends the events atomically, after the stream's expected version."""
    result = await service.append(stream_id, body, idempotency_key, agent_id=None)
    receipt = AppendReceipt.of(result)
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/events/{receipt.sequence}"
    return receipt


@router.get("/streams/{stream_id:path}/events", response_model=StreamPage,
            summary="Read a stream")
async def read_stream(
    stream_id: StreamId, service: Service, principal: Reader,
    from_version: Annotated[int, Query(ge=1, le=INT_MAX)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> StreamPage:
    """Returns the stream's events from from_version on, oldest first, one page at a time."""
    events = await service.client.read_stream(stream_id, from_version=from_version, limit=limit)
    following = events[-1].stream_version + 1 if len(events) == limit else None
    return StreamPage(ledger_id=service.ledger_id, stream_id=stream_id,
                      events=[EventOut.of(e) for e in events], next_from_version=following)


@router.get("/events", response_model=EventPage, summary="Read all events after a sequence")
async def read_all(
    service: Service, principal: Reader,
    after: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EventPage:
    """Returns up to limit events with a sequence above after, in sequence order."""
    events = await service.client.read_all(after=after, limit=limit)
    return EventPage(ledger_id=service.ledger_id, events=[EventOut.of(e) for e in events],
                     next_after=events[-1].sequence if events else after,
                     more=len(events) == limit)


@router.get("/events/{sequence}", response_model=EventOut, summary="Read one event",
            responses=errors(404))
async def read_event(
    sequence: Annotated[int, Path(ge=1, le=INT_MAX)], service: Service, principal: Reader,
) -> EventOut:
    events = await service.client.read_all(after=sequence - 1, limit=1)
    if not events or events[0].sequence != sequence:
        raise ApiError(404, "event_not_found", f"ledger {service.ledger_id} has no event {sequence}")
    return EventOut.of(events[0])


@router.get("/head", response_model=HeadOut, summary="The newest sequence and hash")
async def head(service: Service, principal: Reader) -> HeadOut:
    return HeadOut.of(await service.client.head())


@router.get("/state", response_model=LedgerStateOut, summary="Grant, halt and writer state",
            responses=errors(404))
async def ledger_state(service: Service, principal: Reader) -> LedgerStateOut:
    state = await service.client.event_log.ledger_state(service.ledger_id)
    writer = service.client.writer
    return LedgerStateOut.of(state, writer_id=service.writer_id, writer_state=writer.state.value)


@router.post("/halt", response_model=HaltOut, summary="Halt the ledger",
             responses=errors(400, 404, 503))
async def halt(body: HaltIn, service: Service, principal: Operator) -> HaltOut:
    """Halts the ledger with a chained event; every write is refused until a resume ceremony."""
    recorded, state = await service.halt(body.reason, principal.subject)
    return HaltOut(ledger_id=service.ledger_id, halted=state.halted, recorded=recorded,
                   halt_reason=state.halt_reason)
