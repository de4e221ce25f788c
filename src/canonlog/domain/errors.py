"""Every error canonlog raises, under one root.

The database raises its own SQLSTATEs (class ``CL``, listed in
``docs/reference/sqlstates.md``); each adapter maps them to these classes at a
single choke point, so callers never see a driver exception.
"""

from __future__ import annotations


class CanonlogError(Exception):
    """Root of every canonlog error."""

    #: SQLSTATE the database raises for this condition, when there is one.
    sqlstate: str | None = None


class InvalidEvent(CanonlogError, ValueError):
    """An event or request is malformed; nothing was written."""

    sqlstate = "CL020"


class ConcurrencyConflict(CanonlogError):
    """The stream is not at the version the caller expected; nothing was written."""

    sqlstate = "CL010"

    def __init__(self, message: str, *, stream_id: str = "", expected: object = None,
                 actual: int | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StaleWriter(CanonlogError):
    """The writer id or epoch is not the ledger's current grant; nothing was written."""

    sqlstate = "CL011"


class SystemHalted(CanonlogError):
    """The ledger is halted; nothing was written and the write must not be retried."""

    sqlstate = "CL012"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class IdempotencyConflict(CanonlogError):
    """The execution id was used before with a different request; nothing was written."""

    sqlstate = "CL013"


class GrantUnavailable(CanonlogError):
    """Another writer holds the grant; only a clean hand-over or a ceremony moves it."""

    sqlstate = "CL014"


class WriterLeaseLost(CanonlogError):
    """The writer lost (or never held) its lease; it writes nothing until it holds one again."""


class WriterStopped(CanonlogError):
    """The writer has stopped (shut down, fenced by another writer's grant, or failed to
    re-verify); it writes nothing more, and a new writer must take over."""


class AppendOutcomeUnknown(CanonlogError):
    """The writer could not tell whether an append committed.

    The append may have been written or not. Retrying it with the same execution
    id resolves the doubt: the retry returns the original events (``replayed``
    true) if the first attempt committed, and appends them once if it did not.
    Without an execution id a retry may write the events twice.
    """


class AppendTimeout(AppendOutcomeUnknown):
    """The append was not resolved within the writer's append deadline (``append_timeout``).

    Its outcome is unknown; resolve it as for AppendOutcomeUnknown, by retrying
    with the same execution id.
    """


class WriterTaskFailed(AppendOutcomeUnknown):
    """A background task of the writer failed unexpectedly while the append waited.

    The writer logged the cause, restarted the task and reports the failure in
    its health; the append's outcome is unknown (resolve it by retrying with the
    same execution id).
    """


class LeaseUnavailable(WriterLeaseLost):
    """Another process holds the writer lease of this ledger."""


class HaltStateUnknown(SystemHalted):
    """Halt state could not be determined, so the write is refused (fail closed)."""


class WriterNotVerified(CanonlogError):
    """The writer has not finished its startup self-verification; nothing was written."""


class WriterInconsistency(CanonlogError):
    """Startup self-verification found the database differing from what the writer trusts."""


class UnsafeDurability(CanonlogError):
    """PostgreSQL would acknowledge commits it could lose (fsync, synchronous_commit, ...)."""


class UnsafeLogin(CanonlogError):
    """The writer's login is a superuser, a member of canonlog_owner, or owns a canonlog
    object: it could change history without the append function, so it may not write."""


class LedgerNotFound(CanonlogError, LookupError):
    """The ledger has never been created."""

    sqlstate = "CL015"


class AppendOnlyViolation(CanonlogError):
    """Something tried to change or remove recorded history."""

    sqlstate = "CL001"


class DirectInsertRefused(AppendOnlyViolation):
    """A row was inserted without going through the append function."""

    sqlstate = "CL004"


class IsolationLevelRefused(CanonlogError):
    """The append path runs only under READ COMMITTED, where each statement sees the newest head."""

    sqlstate = "CL016"


class CeremonyError(CanonlogError):
    """A ceremony step (failover, resume) was refused; nothing was recorded."""


class CeremonyNotFound(CeremonyError, LookupError):
    """The ledger has no proposal with that id, or no open ceremony of that kind."""

    sqlstate = "CL030"


class CeremonyNotApplicable(CeremonyError):
    """The proposal does not apply (any more): executed, superseded, of another kind, or
    made against a grant or a halt that is no longer the ledger's."""

    sqlstate = "CL031"


class ApprovalRefused(CeremonyError):
    """The approval is not by an active witness key of the ledger, repeats a witness, or
    its signature does not verify over the proposal's statement."""

    sqlstate = "CL032"


class ThresholdNotMet(CeremonyError):
    """Fewer distinct witnesses than the threshold approved the proposal."""

    sqlstate = "CL033"


class WaitingPeriodNotOver(CeremonyError):
    """The ledger was halted too recently to resume; the message says how long remains."""

    sqlstate = "CL034"


class NoGovernancePolicy(CeremonyError):
    """The ledger has no governance policy, so it runs no ceremonies; the message says
    how the administrator establishes one."""

    sqlstate = "CL035"


class NotAProposer(CeremonyError):
    """The session is not a member of a role the policy lets open proposals."""

    sqlstate = "CL036"


class PolicyAlreadyEstablished(CeremonyError):
    """The ledger has a governance policy already; it changes only through a policy
    ceremony."""

    sqlstate = "CL037"


class GatewayError(CanonlogError):
    """The write gateway refused a request, an approval or a commit; nothing was written
    to the target."""


class InvalidCommand(GatewayError, ValueError):
    """A write command, approval or ticket reference is malformed (a missing task or
    execution id, an unknown operation, a payload canonical JSON refuses); nothing was
    written."""


class WriteDenied(GatewayError):
    """The task's policy does not allow the write (deny by default); the denial is
    recorded in the chain as a ``gateway.denied`` event. ``kind`` names the rule:
    unknown_task, unknown_target, target_not_allowed, operation_not_allowed,
    payload_too_large."""

    def __init__(self, message: str, *, kind: str = "denied") -> None:
        super().__init__(message)
        self.kind = kind


class TicketNotFound(GatewayError, LookupError):
    """No write was requested under that execution id."""


class TicketClosed(GatewayError):
    """The ticket was rejected, denied or has expired; it can no longer be approved or
    committed."""


class TicketExpired(TicketClosed):
    """The ticket's expiry passed before it was committed; the expiry is recorded in the
    chain as a ``gateway.expired`` event."""


class ApprovalInvalid(GatewayError):
    """The approval does not count: its key is unknown, revoked or not an approver's the
    task's policy accepts, its signature is not over this ticket's statement, or its
    approver has approved the ticket already."""


class ApprovalsMissing(GatewayError):
    """The ticket has fewer distinct approvals than its task's policy needs."""


class GatewayPolicyError(GatewayError, ValueError):
    """The operator's gateway policy file cannot be read or is not valid."""


class GovernedStreamRefused(GatewayError):
    """A direct append to a stream the write gateway governs, or under an execution id of
    the form the gateway records its tickets' writes under; such writes go through the
    gateway (``canonlog write``, ``/v1/gateway``)."""


class OperatorLoginMissing(CanonlogError):
    """A governance step needs the operator's login, and none is configured."""


class TamperDetected(CanonlogError):
    """Recorded history does not match its hash chain or a trusted checkpoint."""


class CheckpointFormatError(CanonlogError, ValueError):
    """A checkpoint note, key name or key is not in the signed checkpoint format."""


class CheckpointConflict(CanonlogError):
    """A checkpoint for that ledger and sequence was already published (checkpoints are write-once)."""


class WitnessRefused(CanonlogError):
    """A witness refuses to cosign a checkpoint that does not extend the last one it cosigned."""


class MigrationError(CanonlogError):
    """A migration could not be applied, or an applied one was changed."""


class StorageError(CanonlogError):
    """The storage backend failed in a way canonlog does not classify further."""


class ExportFormatError(CanonlogError, ValueError):
    """An export file is not valid canonlog JSON Lines."""


class VerificationIncomplete(CanonlogError):
    """A verification could not check every event it set out to (a process that checked
    part of the ledger died or failed): it proves nothing, and fails."""


class SagaError(CanonlogError):
    """A saga cannot do what was asked."""


class InvalidSaga(SagaError, ValueError):
    """A saga definition is malformed (unknown backend, operation or compensation, duplicate
    step ids, a payload canonical JSON refuses); nothing was written."""


class SagaNotFound(SagaError, LookupError):
    """No saga has this id."""


class SagaStateConflict(SagaError):
    """The saga is not in a state that allows the request (for example executing a
    finished saga); nothing was written."""


class SagaBusy(SagaError):
    """Another driver holds this saga (its lock, or it moved the saga's stream first)."""


class BackendUnavailable(SagaError):
    """A saga backend could not be reached or did not answer; the step may be retried."""


class BackendRejected(SagaError):
    """A saga backend refused an operation for good (bad input, a conflicting record);
    retrying does not help."""


class RelayError(CanonlogError):
    """A relay consumer cannot go on as asked."""


class ConsumerNotFound(RelayError, LookupError):
    """No relay consumer of that name is registered."""


class InvalidConsumer(RelayError, ValueError):
    """A consumer's settings are malformed, or name another ledger than its own."""


class HistoryRewritten(RelayError):
    """A consumer's cursor names an event whose hash is no longer the chain's: the
    chain was rewritten or cut below what the destination already holds."""

    def __init__(self, sequence: int) -> None:
        super().__init__(f"history rewritten at sequence {sequence}")
        self.sequence = sequence


class ConsumerStopped(RelayError):
    """A consumer stopped on an event it could not deliver (or on a rewritten chain)
    and waits for an operator."""


class DestinationError(RelayError):
    """A destination did not confirm a delivery: down, slow, or answering garbage."""


class InvalidIdempotencyKey(CanonlogError, ValueError):
    """An idempotency key or time to live is malformed; nothing was stored."""


class WebhookRejected(CanonlogError):
    """An incoming webhook is refused: bad or missing signature, or a timestamp
    outside the replay window. Nothing was recorded."""


#: SQLSTATE -> error class, for the adapters' translation choke point.
ERRORS_BY_SQLSTATE: dict[str, type[CanonlogError]] = {
    "CL001": AppendOnlyViolation,
    "CL002": AppendOnlyViolation,
    "CL003": AppendOnlyViolation,
    "CL004": DirectInsertRefused,
    "CL010": ConcurrencyConflict,
    "CL011": StaleWriter,
    "CL012": SystemHalted,
    "CL013": IdempotencyConflict,
    "CL014": GrantUnavailable,
    "CL015": LedgerNotFound,
    "CL016": IsolationLevelRefused,
    "CL020": InvalidEvent,
    "CL030": CeremonyNotFound,
    "CL031": CeremonyNotApplicable,
    "CL032": ApprovalRefused,
    "CL033": ThresholdNotMet,
    "CL034": WaitingPeriodNotOver,
    "CL035": NoGovernancePolicy,
    "CL036": NotAProposer,
    "CL037": PolicyAlreadyEstablished,
}
