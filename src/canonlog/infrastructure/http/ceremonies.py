"""What the ceremony routes call: the application's governance use cases for one ledger.

Reads go through the ledger's reader; proposals and approvals through
canonlog.application.ceremonies on the operator's login, which the service opens
when one is configured (governance never runs as the application's login).
Every answer is the ceremony as it stands now, each recorded signature checked
again against the ledger's governance policy.
"""

from __future__ import annotations

from canonlog.application import ceremonies
from canonlog.application.ports import EventReader, GovernedLedger
from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import CeremonyNotFound, OperatorLoginMissing
from canonlog.infrastructure.http.models import CeremonyOut


class LedgerCeremonies:
    """The failover and resume ceremonies of one ledger, as the HTTP API serves them."""

    def __init__(self, reader: EventReader, governed: GovernedLedger | None,
                 ledger_id: str) -> None:
        self._reader = reader
        self._governed_log = governed
        self.ledger_id = ledger_id

    @property
    def _governed(self) -> GovernedLedger:
        if self._governed_log is None:
            raise OperatorLoginMissing(
                "this service has no operator login configured (CANONLOG_OPERATOR_DSN): it "
                "serves ceremonies but takes no proposals or approvals")
        return self._governed_log

    async def _report(self, ceremony: Ceremony) -> CeremonyOut:
        return CeremonyOut.of(await ceremonies.report_ceremony(self._reader, ceremony))

    async def list(self) -> list[CeremonyOut]:
        """Every ceremony of the ledger, newest first."""
        found = await self._reader.ceremonies(self.ledger_id)
        return [await self._report(c) for c in reversed(found)]

    async def one(self, proposal_id: int) -> CeremonyOut:
        """The proposal; CeremonyNotFound when the ledger has none by that id."""
        found = await self._reader.ceremonies(self.ledger_id, proposal_id)
        if not found:
            raise CeremonyNotFound(f"ledger {self.ledger_id} has no proposal {proposal_id}")
        return await self._report(found[0])

    async def propose_failover(self, target_writer_id: str, actor: str) -> CeremonyOut:
        return await self._report(await ceremonies.propose_failover(
            self._governed, self.ledger_id, target_writer_id, actor))

    async def approve(self, proposal_id: int, key_id: str, signature: bytes,
                      actor: str) -> CeremonyOut:
        """Records a witness's signature over the proposal's statement once it verifies;
        ApprovalRefused when it does not."""
        return await self._report(await ceremonies.approve(
            self._governed, self.ledger_id, proposal_id, key_id, actor, signature=signature))

    async def approve_resume(self, key_id: str, signature: bytes, actor: str) -> CeremonyOut:
        """Opens the resume ceremony of the current halt if needed, and approves it."""
        return await self._report(await ceremonies.approve_resume(
            self._governed, self.ledger_id, key_id, actor, signature=signature))
