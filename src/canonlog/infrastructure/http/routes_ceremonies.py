"""Routes of the governance ceremonies: read them, propose a failover, submit signed approvals.

Witnesses sign a ceremony's statement offline, with their own key; the service
records the signature only once it verifies. Executing a ceremony stays with the
operator's command line.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from canonlog.domain.canonical import INT_MAX
from canonlog.infrastructure.http.auth import Principal, requires
from canonlog.infrastructure.http.ceremonies import LedgerCeremonies
from canonlog.infrastructure.http.models import ApprovalIn, CeremonyList, CeremonyOut, FailoverIn
from canonlog.infrastructure.http.routes_ledger import Operator, Reader, errors
from canonlog.infrastructure.http.strict_json import StrictJsonRoute


def ledger_ceremonies(request: Request) -> LedgerCeremonies:
    found: LedgerCeremonies = request.app.state.ceremonies
    return found


Ceremonies = Annotated[LedgerCeremonies, Depends(ledger_ceremonies)]
Approver = Annotated[Principal, Depends(requires("approve"))]
ProposalId = Annotated[int, Path(ge=1, le=INT_MAX)]

router = APIRouter(prefix="/v1/ceremonies", route_class=StrictJsonRoute,
                   responses=errors(401, 403, 404, 422))


@router.get("", response_model=CeremonyList, summary="Failover and resume ceremonies, newest first")
async def list_ceremonies(desk: Ceremonies, principal: Reader) -> CeremonyList:
    return CeremonyList(ledger_id=desk.ledger_id, ceremonies=await desk.list())


@router.get("/{proposal_id}", response_model=CeremonyOut, summary="One ceremony and its approvals")
async def ceremony(proposal_id: ProposalId, desk: Ceremonies, principal: Reader) -> CeremonyOut:
    return await desk.one(proposal_id)


@router.post("/failover", status_code=201, response_model=CeremonyOut,
             summary="Propose a failover", responses=errors(400, 409, 503))
async def propose_failover(body: FailoverIn, desk: Ceremonies, principal: Operator,
                           response: Response) -> CeremonyOut:
    """Opens a failover proposal that moves the grant to target_writer_id once enough
    witnesses approve it; each witness signs the returned statement."""
    proposed = await desk.propose_failover(body.target_writer_id, principal.subject)
    response.headers["Location"] = f"/v1/ceremonies/{proposed.proposal_id}"
    return proposed


@router.post("/resume/approvals", status_code=201, response_model=CeremonyOut,
             summary="Approve resuming the halted ledger", responses=errors(400, 409, 503))
async def approve_resume(body: ApprovalIn, desk: Ceremonies, principal: Approver) -> CeremonyOut:
    """Opens the resume ceremony of the current halt if there is none, and records the
    approval; the statement signed names the halt event (its sequence and hash)."""
    return await desk.approve_resume(body.key_id, bytes.fromhex(body.signature),
                                     principal.subject)


@router.post("/{proposal_id}/approvals", status_code=201, response_model=CeremonyOut,
             summary="Submit a witness's signed approval", responses=errors(400, 409, 503))
async def approve_ceremony(proposal_id: ProposalId, body: ApprovalIn, desk: Ceremonies,
                           principal: Approver) -> CeremonyOut:
    """Records the approval once its signature verifies over the proposal's statement
    under the witness key named; a signature that does not verify is refused (409)."""
    return await desk.approve(proposal_id, body.key_id, bytes.fromhex(body.signature),
                              principal.subject)
