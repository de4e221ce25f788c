"""Routes for operating the service: checkpoints, verification runs, health, metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from canonlog.domain.canonical import INT_MAX
from canonlog.infrastructure.http.errors import error_response
from canonlog.infrastructure.http.models import (
    CheckpointList,
    CheckpointOut,
    ErrorOut,
    HealthOut,
    VerificationList,
    VerificationOut,
)
from canonlog.infrastructure.http.routes_ledger import Operator, Reader, Service, errors
from canonlog.infrastructure.http.strict_json import StrictJsonRoute

Sequence = Annotated[int, Path(ge=0, le=INT_MAX)]

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute, responses=errors(401, 403, 404, 422))


@router.get("/checkpoints", response_model=CheckpointList, summary="Published checkpoints",
            responses=errors(404))
async def list_checkpoints(service: Service, principal: Reader) -> CheckpointList:
    return CheckpointList(ledger_id=service.ledger_id,
                          sequences=await service.checkpoint_sequences())


@router.get("/checkpoints/latest", response_model=CheckpointOut, summary="The newest checkpoint",
            responses=errors(404))
async def latest_checkpoint(service: Service, principal: Reader) -> CheckpointOut:
    return await service.checkpoint(None)


@router.get("/checkpoints/{sequence}", response_model=CheckpointOut,
            summary="The checkpoint at a sequence", responses=errors(404))
async def checkpoint(sequence: Sequence, service: Service, principal: Reader) -> CheckpointOut:
    return await service.checkpoint(sequence)


@router.get("/checkpoints/{sequence}/note", response_class=Response, summary="The raw signed note",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the signed note"}, **errors(404)})
async def checkpoint_note(sequence: Sequence, service: Service, principal: Reader) -> Response:
    """The note exactly as published, cosignatures included (text/plain; C2SP signed note)."""
    return Response(await service.checkpoint_note(sequence), media_type="text/plain; charset=utf-8")


@router.post("/verifications", status_code=202, response_model=VerificationOut,
             summary="Start a verification")
async def start_verification(service: Service, principal: Operator,
                             response: Response) -> VerificationOut:
    """Starts recomputing the whole chain from genesis, and comparing it with every trusted
    checkpoint, in the background; poll the run's URL for the report."""
    view = service.start_verification()
    response.headers["Location"] = f"/v1/verifications/{view.id}"
    return view


@router.get("/verifications", response_model=VerificationList,
            summary="Recent verification runs, newest first")
async def list_verifications(service: Service, principal: Reader) -> VerificationList:
    return VerificationList(ledger_id=service.ledger_id, runs=service.verifications())


@router.get("/verifications/{run_id}", response_model=VerificationOut,
            summary="A verification run and its report", responses=errors(404))
async def verification(
    run_id: Annotated[str, Path(max_length=64)], service: Service, principal: Reader,
) -> VerificationOut:
    return service.verification(run_id)


health = APIRouter()


@health.get("/healthz", response_model=HealthOut, summary="The process serves")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@health.get("/readyz", response_model=HealthOut, summary="The service can take writes",
            responses={503: {"model": ErrorOut}})
async def readyz(service: Service) -> HealthOut | JSONResponse:
    """Ready when the database answers, the writer is verified and accepting, its lease is
    held and the ledger is not halted; otherwise 503 naming every failing check."""
    reasons, checks = await service.readiness()
    if reasons:
        return error_response(503, "not_ready", "; ".join(reasons),
                              {"reasons": reasons, "checks": checks})
    return HealthOut(status="ready", checks=checks)


@health.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the Prometheus text exposition format"}})
async def metrics(service: Service) -> Response:
    await service.refresh_gauges()
    return Response(service.metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
