"""The write gateway: every governed write through one door.

request_write records a command as a ticket (or its denial), approve records an
approver's signature over the ticket's statement, reject closes it, and
commit_write performs the write once the task's policy is met: the write and its
``gateway.committed`` audit event are one append request, so both land or
neither. The ticket's own events are appended under the expected version of its
stream, so racing approvals, rejections and expiry are serialised by the
database; the commit and every closing event carry the ticket's execution id, so
the database lets exactly one of them land (a repeated commit replays the first).
See domain/gateway.py and domain/tickets.py for the rules and the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from canonlog.application.ports import (
    AppendResult,
    CanonicalWriter,
    Clock,
    EventReader,
    WriteExecutor,
)
from canonlog.domain.approvals import Refusal, counted_approvers, judge_approval
from canonlog.domain.canonical import parse_json
from canonlog.domain.errors import (
    ApprovalInvalid,
    ApprovalsMissing,
    ConcurrencyConflict,
    GatewayPolicyError,
    IdempotencyConflict,
    InvalidCommand,
    TicketClosed,
    TicketExpired,
    TicketNotFound,
    WriteDenied,
    WriterNotVerified,
)
from canonlog.domain.events import (
    AppendRequest,
    ExpectedVersion,
    NewEvent,
    StreamState,
    WriteContext,
)
from canonlog.domain.gateway import (
    POLICY_STREAM,
    GatewayPolicies,
    PolicyVersion,
    WriteCommand,
    approval_statement_v1,
    judge,
    recorded_execution_id,
    rfc3339,
    ticket_stream,
)
from canonlog.domain.tickets import (
    APPROVED,
    COMMITTED,
    DENIED,
    EXPIRED,
    POLICY_LOADED,
    REFUSED,
    REJECTED,
    REQUESTED,
    STAGED,
    Denied,
    Ticket,
    TicketStatus,
    fold_ticket,
    payload_of,
    same_request,
)

#: Attempts at a ticket step that keeps meeting concurrent steps before it gives up.
_ATTEMPTS: Final = 100
logger = structlog.get_logger("canonlog.gateway")


def utc_now() -> datetime:
    return datetime.now(UTC)


class WriteGateway:
    """The write gateway of one ledger; see the module docstring for what it guarantees.

    Without a writer it reads tickets and refuses every step (WriterNotVerified), and
    load_policies only finds the version a writing gateway recorded.
    """

    def __init__(self, writer: CanonicalWriter | None, reader: EventReader, ledger_id: str,
                 executors: Mapping[str, WriteExecutor], *, clock: Clock = utc_now) -> None:
        self._writer = writer
        self._reader = reader
        self._ledger_id = ledger_id
        self._executors = dict(executors)
        self._clock = clock
        self._policy: PolicyVersion | None = None

    @property
    def ledger_id(self) -> str:
        return self._ledger_id

    @property
    def reader(self) -> EventReader:
        return self._reader

    @property
    def policy(self) -> PolicyVersion:
        """The policy version in force; raises WriteDenied before one is loaded."""
        if self._policy is None:
            raise WriteDenied("the gateway has no policy loaded, so it denies every write",
                              kind="unknown_task")
        return self._policy

    # -- policies --------------------------------------------------------------------

    async def load_policies(self, policies: GatewayPolicies, actor: str) -> PolicyVersion:
        """Puts policies in force, recording them in the chain as a new policy version
        (a ``gateway.policy_loaded`` event) unless they are the version in force.
        Raises GatewayPolicyError for an executor name no executor is registered under."""
        unknown = sorted(set(policies.executors.values()) - set(self._executors))
        if unknown:
            raise GatewayPolicyError(f"no executor is registered as {', '.join(unknown)}")
        for _ in range(_ATTEMPTS):
            events = await self._reader.read_stream(self._ledger_id, POLICY_STREAM)
            last = events[-1] if events else None
            if last is not None and payload_of(last)["sha256"] == policies.sha256:
                self._policy = PolicyVersion(last.stream_version, policies)
                return self._policy
            if self._writer is None:
                raise GatewayPolicyError("the policy file is not the version in force, and "
                                         "only a writing gateway records a new version")
            event = NewEvent.create(POLICY_LOADED, {
                "sha256": policies.sha256, "loaded_by": actor,
                "document": parse_json(policies.document, "policy document")})
            try:
                result = await self._append(
                    POLICY_STREAM, [event], last.stream_version if last else StreamState.NO_STREAM,
                    WriteContext(writer_time=self._clock()))
            except ConcurrencyConflict:
                continue
            self._policy = PolicyVersion(result.events[0].stream_version, policies)
            logger.info("gateway policy loaded", version=self._policy.version,
                        sha256=policies.sha256)
            return self._policy
        raise ConcurrencyConflict("the gateway policy stream kept moving; load it again")

    # -- reads -----------------------------------------------------------------------

    async def ticket(self, execution_id: str, *, find_commit: bool = True) -> Ticket:
        """Returns the ticket of an execution id with everything recorded about it; raises
        TicketNotFound when none was requested, WriteDenied when it was denied.

        Whether it was committed is read from the events recorded under the execution
        id; find_commit False skips that read (the status is then never committed)."""
        folded = await self._fold(execution_id, find_commit=find_commit)
        if folded is None:
            raise TicketNotFound(f"no write was requested under execution id {execution_id!r}")
        if isinstance(folded, Denied):
            raise WriteDenied(folded.reason, kind=folded.kind)
        return folded

    async def _fold(self, execution_id: str, *, find_commit: bool = True
                    ) -> Ticket | Denied | None:
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidCommand("execution_id must be a non-empty string")
        folded = fold_ticket(await self._reader.read_stream(self._ledger_id,
                                                            ticket_stream(execution_id)))
        if not isinstance(folded, Ticket) or folded.closed or not find_commit:
            return folded
        # Only the planned write on the target's stream commits the ticket: events that
        # another stream holds under the same execution id do not.
        plan = self._executor(folded.command).plan(folded.command)
        committed = tuple(await self._reader.read_execution(
            self._ledger_id, recorded_execution_id(execution_id)))
        if any(e.event_type == COMMITTED and e.stream_id == plan.stream_id for e in committed):
            return replace(folded, status=TicketStatus.COMMITTED, committed=committed)
        return folded

    # -- the steps -------------------------------------------------------------------

    async def request_write(self, command: WriteCommand) -> Ticket:
        """Records the command as a ticket and returns it; the same command again returns
        the same ticket. Raises WriteDenied (recording the denial) when the policy does
        not allow it, IdempotencyConflict when its execution id was used for another."""
        policy = self.policy
        for _ in range(_ATTEMPTS):
            existing = await self._fold(command.execution_id, find_commit=False)
            if existing is not None:
                return same_request(existing, command)
            denial = judge(command, policy.policies)
            context = WriteContext(task_id=command.task_id, writer_time=self._clock())
            if denial is not None:
                event = NewEvent.create(DENIED, {
                    **command.audit_fields(), "kind": denial.kind, "reason": denial.reason,
                    "policy_version": policy.version, "command_sha256": command.digest()})
                context = WriteContext(task_id=command.task_id, writer_time=self._clock(),
                                       execution_id=recorded_execution_id(command.execution_id))
                events = [event]
            else:
                task = policy.policies.tasks[command.task_id]
                expires_at = self._clock() + timedelta(seconds=task.ticket_ttl_seconds)
                events = [
                    NewEvent.create(REQUESTED, {
                        **command.audit_fields(), "policy_version": policy.version,
                        "policy_sha256": policy.policies.sha256,
                        "approvals_required": task.approvals, "expires_at": rfc3339(expires_at)}),
                    NewEvent.create(STAGED, {"payload": parse_json(command.payload, "payload")}),
                ]
            try:
                result = await self._append(ticket_stream(command.execution_id), events,
                                            StreamState.NO_STREAM, context)
            except (ConcurrencyConflict, IdempotencyConflict):
                continue  # requested concurrently: judged against what landed
            if denial is not None:
                logger.info("write denied", task_id=command.task_id,
                            execution_id=command.execution_id, kind=denial.kind)
                raise WriteDenied(denial.reason, kind=denial.kind)
            # The new stream holds exactly the events just recorded.
            ticket = fold_ticket(list(result.events))
            assert isinstance(ticket, Ticket)
            return ticket
        raise ConcurrencyConflict(f"ticket {command.execution_id} kept moving; try again")

    async def approve(self, execution_id: str, key_id: str, signature: bytes,
                      submitted_by: str | None = None) -> Ticket:
        """Records an approver's signature over the ticket's statement and returns the
        ticket. Raises ApprovalInvalid for a key that is unknown, revoked or not an
        approver's of the task, a signature that does not verify over this ticket's
        statement, or a second approval by the same approver, recording the refusal once
        per ticket, rule and key (with submitted_by, who passed it on); TicketClosed
        (TicketExpired) when the ticket can no longer be approved."""
        for _ in range(_ATTEMPTS):
            ticket = await self._open_ticket(execution_id)
            verdict = judge_approval(
                self.policy.policies, ticket, key_id, signature,
                await self._reader.list_keys(self._ledger_id), self.statement(ticket),
                self._ledger_id)
            if isinstance(verdict, Refusal):
                await self._record_refusal(ticket, verdict, submitted_by)
                raise ApprovalInvalid(verdict.reason)
            assert isinstance(signature, bytes)
            event = NewEvent.create(APPROVED, {
                **ticket.command.audit_fields(), "approver": verdict.name, "key_id": key_id,
                "roles": sorted(verdict.roles), "signature": signature.hex(),
                "policy_version": ticket.policy_version})
            try:
                await self._append(ticket_stream(execution_id), [event], ticket.version,
                                   WriteContext(task_id=ticket.command.task_id,
                                                writer_time=self._clock()))
            except ConcurrencyConflict:
                continue
            logger.info("write approved", execution_id=execution_id, approver=verdict.name)
            return await self.ticket(execution_id)
        raise ConcurrencyConflict(f"ticket {execution_id} kept moving; approve again")

    async def reject(self, execution_id: str, reason: str, rejected_by: str) -> Ticket:
        """Closes the ticket with a ``gateway.rejected`` event and returns it; raises
        TicketClosed when it is closed or committed already."""
        if not isinstance(reason, str) or not reason or len(reason) > 1000:
            raise InvalidCommand("a rejection needs a reason of 1 to 1000 characters")
        event_fields = {"reason": reason, "rejected_by": rejected_by}
        return await self._close(execution_id, REJECTED, event_fields)

    async def commit_write(self, execution_id: str, committed_by: str) -> AppendResult:
        """Performs the ticket's write with its ``gateway.committed`` event, which names
        committed_by, in one append and returns the recorded events; once committed,
        returns the original events (``replayed``) and writes nothing, whoever commits
        again. Raises ApprovalsMissing before the policy's approvals are in (recording
        the refusal once per ticket and approval count), TicketExpired (recording the
        expiry) after its expiry, and TicketClosed for a rejected ticket."""
        for _ in range(_ATTEMPTS):
            # The commit itself finds an earlier commit (the database replays it), so
            # the target's stream is read only when a step was refused.
            try:
                ticket = await self._open_ticket(
                    execution_id, await self.ticket(execution_id, find_commit=False))
            except TicketClosed:
                landed = await self.ticket(execution_id)
                if landed.status is TicketStatus.COMMITTED:
                    return AppendResult(landed.committed, replayed=True)
                raise
            # The policy and the signatures decide, not what the ticket's events claim:
            # a ticket stream written around the gateway gains nothing.
            task = self.policy.policies.tasks.get(ticket.command.task_id)
            denial = judge(ticket.command, self.policy.policies)
            if task is None or denial is not None:
                raise TicketClosed(f"ticket {execution_id} does not pass its policy: "
                                   f"{denial.reason if denial else 'no task policy'}")
            approvers = await self._counted_approvers(ticket)
            if len(approvers) < task.approvals:
                refusal = Refusal("commit", "approvals_missing",
                                  f"{len(approvers)}/{task.approvals}",
                                  f"ticket {execution_id} has {len(approvers)} of the "
                                  f"{task.approvals} approvals its policy needs")
                await self._record_refusal(ticket, refusal, committed_by)
                raise ApprovalsMissing(refusal.reason)
            plan = self._executor(ticket.command).plan(ticket.command)
            audit = NewEvent.create(COMMITTED, {
                **ticket.command.audit_fields(), "policy_version": ticket.policy_version,
                "requested_seq": ticket.requested_seq,
                "approvers": sorted(approvers), "committed_by": committed_by})
            try:
                result = await self._append(plan.stream_id, [*plan.events, audit],
                                            plan.expected_version, self._context(ticket))
            except IdempotencyConflict:
                # Another step closed or committed it first (a commit by another
                # principal differs by committed_by): what landed decides.
                landed = await self.ticket(execution_id)
                if landed.status is TicketStatus.COMMITTED:
                    return AppendResult(landed.committed, replayed=True)
                if landed.closed:
                    await self._open_ticket(execution_id, landed)
                raise
            logger.info("write committed", execution_id=execution_id,
                        sequence=result.events[0].sequence, replayed=result.replayed)
            return result
        raise ConcurrencyConflict(f"ticket {execution_id} kept moving; commit again")

    def statement(self, ticket: Ticket) -> bytes:
        """The approval statement approvers sign for ticket (domain.gateway)."""
        return approval_statement_v1(
            ledger_id=self._ledger_id, command=ticket.command,
            policy_version=ticket.policy_version, requested_seq=ticket.requested_seq,
            expires_at=ticket.expires_at)

    # -- what the steps share -----------------------------------------------------------

    async def _open_ticket(self, execution_id: str, ticket: Ticket | None = None) -> Ticket:
        """The ticket, when it may still be approved or committed: not closed, requested
        under the policy version in force, and not expired (recording the expiry)."""
        ticket = ticket or await self.ticket(execution_id)
        if ticket.status is TicketStatus.COMMITTED:
            raise TicketClosed(f"ticket {execution_id} is committed already")
        if ticket.closed:
            raise (TicketExpired if ticket.status is TicketStatus.EXPIRED else TicketClosed)(
                f"ticket {execution_id} is {ticket.status.value}: {ticket.reason}")
        if ticket.policy_version != self.policy.version:
            raise TicketClosed(
                f"ticket {execution_id} was requested under policy version "
                f"{ticket.policy_version}; version {self.policy.version} is in force, so "
                "request the write again under a new execution id")
        if self._clock() >= ticket.expires_at:
            closed = await self._close(execution_id, EXPIRED,
                                       {"expires_at": rfc3339(ticket.expires_at)}, expiring=True)
            if closed.status is TicketStatus.COMMITTED:
                raise TicketClosed(f"ticket {execution_id} is committed already")
            raise TicketExpired(f"ticket {execution_id} expired at {rfc3339(ticket.expires_at)}")
        return ticket

    async def _close(self, execution_id: str, event_type: str, fields: dict[str, Any], *,
                     expiring: bool = False) -> Ticket:
        for _ in range(_ATTEMPTS):
            ticket = await self.ticket(execution_id)
            if ticket.status is TicketStatus.EXPIRED and expiring:
                return ticket
            if ticket.status is TicketStatus.COMMITTED or ticket.closed:
                if expiring:
                    return ticket
                raise TicketClosed(f"ticket {execution_id} is {ticket.status.value} already")
            event = NewEvent.create(event_type, {**ticket.command.audit_fields(), **fields})
            try:
                await self._append(ticket_stream(execution_id), [event], ticket.version,
                                   self._context(ticket))
            except (ConcurrencyConflict, IdempotencyConflict):
                continue  # an approval, a commit or another closing step came first
            logger.info("ticket closed", execution_id=execution_id, event_type=event_type)
            return await self.ticket(execution_id)
        raise ConcurrencyConflict(f"ticket {execution_id} kept moving; try again")

    async def _counted_approvers(self, ticket: Ticket) -> set[str]:
        if not ticket.approvals:
            return set()
        keys = {k.key_id: k for k in await self._reader.list_keys(self._ledger_id)}
        return counted_approvers(self.policy.policies, ticket, keys, self.statement(ticket))

    async def _record_refusal(self, ticket: Ticket, refusal: Refusal, by: str | None) -> None:
        """Records refusal on the ticket's stream as ``gateway.refused`` unless the same
        decision is recorded there already: the first of each is the record, so asking
        again costs the caller a refusal and the chain nothing."""
        execution_id = ticket.command.execution_id
        for _ in range(_ATTEMPTS):
            if refusal.key in ticket.refusals:
                return
            event = NewEvent.create(REFUSED, {
                **ticket.command.audit_fields(), "step": refusal.step, "kind": refusal.kind,
                "subject": refusal.subject, "reason": refusal.reason, "by": by,
                "policy_version": ticket.policy_version})
            try:
                await self._append(ticket_stream(execution_id), [event], ticket.version,
                                   WriteContext(task_id=ticket.command.task_id,
                                                writer_time=self._clock()))
            except ConcurrencyConflict:
                ticket = await self.ticket(execution_id, find_commit=False)
                continue
            logger.info("gateway step refused", execution_id=execution_id,
                        step=refusal.step, kind=refusal.kind)
            return
        raise ConcurrencyConflict(f"ticket {execution_id} kept moving; try again")

    def _executor(self, command: WriteCommand) -> WriteExecutor:
        name = self.policy.policies.executor_for(command.target)
        executor = self._executors.get(name) if name is not None else None
        if executor is None:
            raise InvalidCommand(f"no executor is registered for target {command.target!r}")
        return executor

    def _context(self, ticket: Ticket) -> WriteContext:
        return WriteContext(task_id=ticket.command.task_id,
                            execution_id=recorded_execution_id(ticket.command.execution_id),
                            writer_time=self._clock())

    async def _append(self, stream_id: str, events: list[NewEvent], expected: ExpectedVersion,
                      context: WriteContext) -> AppendResult:
        if self._writer is None:
            raise WriterNotVerified("this gateway only reads; it has no writer")
        return await self._writer.append(AppendRequest.create(
            stream_id, events, expected_version=expected, context=context))

