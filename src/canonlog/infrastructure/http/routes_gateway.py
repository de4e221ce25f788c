"""Routes of the write gateway: request, approve, reject and commit governed writes.

Each step needs its scope (request, approve, commit; reads need read) and the
authorization policy's consent; the chain records the token's subject as who
requested or rejected. Approvers sign a ticket's statement offline with their own
key; the service records the approval only once it verifies. Without a gateway
policy file (CANONLOG_GATEWAY_POLICY_FILE) every route answers 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from canonlog.application.gateway import WriteGateway
from canonlog.application.gateway_audit import audit_trail
from canonlog.domain.errors import ApprovalInvalid, GatewayPolicyError
from canonlog.domain.gateway import WriteCommand
from canonlog.domain.tickets import Ticket
from canonlog.infrastructure.http.auth import Principal, requires
from canonlog.infrastructure.http.routes_ledger import Reader, errors
from canonlog.infrastructure.http.strict_json import StrictJsonRoute


def write_gateway(request: Request) -> WriteGateway:
    found: WriteGateway | None = getattr(request.app.state, "gateway", None)
    if found is None:
        raise GatewayPolicyError("the write gateway is not configured: set "
                                 "CANONLOG_GATEWAY_POLICY_FILE")
    return found


Gateway = Annotated[WriteGateway, Depends(write_gateway)]
Requester = Annotated[Principal, Depends(requires("request"))]
Approver = Annotated[Principal, Depends(requires("approve"))]
Committer = Annotated[Principal, Depends(requires("commit"))]
ExecutionId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^/\\?#%]+$")]

router = APIRouter(prefix="/v1/gateway", route_class=StrictJsonRoute,
                   responses=errors(401, 403, 404, 409, 422, 503))


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteRequestIn(_In):
    task_id: str = Field(min_length=1, max_length=256)
    execution_id: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=256)
    operation: str = Field(min_length=1, max_length=16)
    payload: dict[str, Any]
    summary: str = Field(default="", max_length=1000)


class GatewayApprovalIn(_In):
    key_id: str = Field(min_length=1, max_length=256)
    signature: str = Field(pattern=r"^[0-9a-fA-F]{128}$", description="Ed25519, as hex")


class RejectionIn(_In):
    reason: str = Field(min_length=1, max_length=1000)


class TicketOut(BaseModel):
    ticket: str
    status: str
    task_id: str
    execution_id: str
    target: str
    operation: str
    summary: str
    requested_by: str
    payload_sha256: str
    policy_version: int
    approvals_required: int
    approvals: list[dict[str, Any]]
    requested_seq: int
    requested_at: str
    expires_at: str
    reason: str | None
    committed_seq: int | None

    @classmethod
    def of(cls, ticket: Ticket) -> TicketOut:
        return cls(**ticket.summary())


class CommitOut(BaseModel):
    ticket: str
    replayed: bool
    events: list[dict[str, Any]]


class StatementOut(BaseModel):
    ticket: str
    statement: str = Field(description="the exact UTF-8 text an approver signs")


@router.post("/tickets", status_code=201, response_model=TicketOut,
             summary="Request a governed write")
async def gateway_request(body: WriteRequestIn, gateway: Gateway,
                          principal: Requester) -> TicketOut:
    """Records the write as a ticket under its task's policy (a denial is recorded and
    answered 403); the token's subject is recorded as who requested it."""
    command = WriteCommand.create(
        task_id=body.task_id, execution_id=body.execution_id, target=body.target,
        operation=body.operation, payload=body.payload, summary=body.summary,
        requested_by=principal.subject)
    return TicketOut.of(await gateway.request_write(command))


@router.get("/tickets/{execution_id}", response_model=TicketOut, summary="A ticket's state")
async def gateway_ticket(execution_id: ExecutionId, gateway: Gateway,
                         principal: Reader) -> TicketOut:
    return TicketOut.of(await gateway.ticket(execution_id))


@router.get("/tickets/{execution_id}/statement", response_model=StatementOut,
            summary="The approval statement approvers sign")
async def gateway_statement(execution_id: ExecutionId, gateway: Gateway,
                            principal: Reader) -> StatementOut:
    statement = gateway.statement(await gateway.ticket(execution_id))
    return StatementOut(ticket=execution_id, statement=statement.decode("utf-8"))


@router.post("/tickets/{execution_id}/approvals", status_code=201, response_model=TicketOut,
             summary="Submit an approver's signed approval")
async def gateway_approve(execution_id: ExecutionId, body: GatewayApprovalIn, gateway: Gateway,
                          principal: Approver) -> TicketOut:
    try:
        signature = bytes.fromhex(body.signature)
    except ValueError as exc:  # pragma: no cover - the pattern admits only hex
        raise ApprovalInvalid("the signature is not hex") from exc
    return TicketOut.of(await gateway.approve(execution_id, body.key_id, signature,
                                              principal.subject))


@router.post("/tickets/{execution_id}/rejection", response_model=TicketOut,
             summary="Reject a ticket")
async def gateway_reject(execution_id: ExecutionId, body: RejectionIn, gateway: Gateway,
                         principal: Approver) -> TicketOut:
    return TicketOut.of(await gateway.reject(execution_id, body.reason, principal.subject))


@router.post("/tickets/{execution_id}/commit", response_model=CommitOut,
             summary="Perform an approved write, once")
async def gateway_commit(execution_id: ExecutionId, gateway: Gateway,
                         principal: Committer) -> CommitOut:
    """Writes the ticket's write and its audit event, which records the token's subject
    as who committed, in one append; committing again returns the original events with
    replayed true and writes nothing."""
    result = await gateway.commit_write(execution_id, principal.subject)
    return CommitOut(ticket=execution_id, replayed=result.replayed, events=[
        {"sequence": e.sequence, "stream_id": e.stream_id, "stream_version": e.stream_version,
         "event_type": e.event_type, "hash": e.hash.hex()} for e in result.events])


@router.get("/audit", summary="The gateway's audit trail, from the chain")
async def gateway_audit(gateway: Gateway, principal: Reader,
                        task: Annotated[str | None, Query(max_length=256)] = None,
                        ticket: Annotated[str | None, Query(max_length=200)] = None,
                        since: datetime | None = None) -> list[dict[str, Any]]:
    """Who requested, approved, rejected and committed what, under which policy version;
    policy versions are listed whatever the filters."""
    entries = await audit_trail(gateway.reader, gateway.ledger_id, task_id=task,
                                execution_id=ticket, since=since)
    return [e.as_dict() for e in entries]
