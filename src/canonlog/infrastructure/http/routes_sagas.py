"""Routes of sagas: create, execute, resume, abort, compensate, show and list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from canonlog.domain.saga import SagaStatus
from canonlog.infrastructure.http.errors import ApiError
from canonlog.infrastructure.http.routes_ledger import Appender, Operator, Reader, errors
from canonlog.infrastructure.http.sagas import SagaService
from canonlog.infrastructure.http.strict_json import StrictJsonRoute
from canonlog.infrastructure.sagas.views import history_json, saga_json


class SagaIn(BaseModel):
    """A saga to record: its name, its steps (the step contract), an optional trace id."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    trace_id: str | None = Field(default=None, min_length=1, max_length=256)
    execute: bool = Field(default=False, description="run it before answering")


class AbortIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="requested", min_length=1, max_length=1000)


def saga_service(request: Request) -> SagaService:
    service: SagaService | None = getattr(request.app.state, "sagas", None)
    if service is None:
        raise ApiError(503, "sagas_not_configured", "no saga backend is configured: set "
                       "CANONLOG_SAGA_BACKEND_DSN, CANONLOG_SAGA_REDIS_URL or "
                       "CANONLOG_SAGA_FILES_DIR")
    return service


Sagas = Annotated[SagaService, Depends(saga_service)]
SagaId = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(prefix="/v1/sagas", route_class=StrictJsonRoute,
                   responses=errors(401, 403, 404, 409, 422, 503))


@router.post("", status_code=201, summary="Record a saga (and run it with execute)")
async def create(body: SagaIn, sagas: Sagas, principal: Appender) -> dict[str, Any]:
    """Validates every step before anything is written (422 naming the problem)."""
    saga_id = await sagas.orchestrator.create_saga(body.name, body.steps, body.trace_id)
    if body.execute:
        return saga_json(await sagas.orchestrator.execute_saga(saga_id))
    return saga_json(await sagas.orchestrator.state(saga_id))


@router.get("", summary="Sagas, optionally only those in one state")
async def list_sagas(sagas: Sagas, principal: Reader,
                     state: Annotated[SagaStatus | None, Query()] = None) -> list[dict[str, Any]]:
    await sagas.index.refresh()
    return [saga_json(s) for s in sagas.index.sagas(state)]


@router.get("/{saga_id}", summary="A saga's state and its history from the chain")
async def show(saga_id: SagaId, sagas: Sagas, principal: Reader) -> dict[str, Any]:
    history = await sagas.orchestrator.history(saga_id)
    return {"saga": saga_json(await sagas.orchestrator.state(saga_id)),
            "history": history_json(history)}


@router.post("/{saga_id}/execute", summary="Run a created saga to its end")
async def execute(saga_id: SagaId, sagas: Sagas, principal: Appender) -> dict[str, Any]:
    return saga_json(await sagas.orchestrator.execute_saga(saga_id))


@router.post("/{saga_id}/resume", summary="Drive an unfinished saga on")
async def resume(saga_id: SagaId, sagas: Sagas, principal: Appender) -> dict[str, Any]:
    return saga_json(await sagas.orchestrator.resume_saga(saga_id))


@router.post("/{saga_id}/abort", summary="Stop a saga and compensate what ran")
async def abort(saga_id: SagaId, body: AbortIn, sagas: Sagas,
                principal: Operator) -> dict[str, Any]:
    return saga_json(await sagas.orchestrator.abort_saga(saga_id, body.reason))


@router.post("/{saga_id}/compensate", summary="Undo a saga in reverse step order")
async def compensate(saga_id: SagaId, body: AbortIn, sagas: Sagas,
                     principal: Operator) -> dict[str, Any]:
    return saga_json(await sagas.orchestrator.compensate_saga(saga_id, body.reason))

