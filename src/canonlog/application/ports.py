"""Every port of the application layer, as Protocols the adapters implement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from canonlog.domain.ceremony import Ceremony
from canonlog.domain.errors import CanonlogError
from canonlog.domain.events import (
    AppendRequest,
    ExpectedVersion,
    Head,
    LedgerState,
    NewEvent,
    RecordedEvent,
    RegisteredKey,
    StreamState,
    WriterGrant,
)
from canonlog.domain.gateway import ExecutionPlan, WriteCommand
from canonlog.domain.governance import GovernancePolicy, PolicyInForce
from canonlog.domain.relay import ConsumerSettings, ConsumerState, DeliveryFailure, RangeDigest
from canonlog.domain.saga import SagaStep

if TYPE_CHECKING:
    from canonlog.application.verifier import ChainReport, SignaturePolicy


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The events one append request produced, or produced before when replayed.

    ``replayed`` is true when the execution id had been recorded with the same
    request: the events are the originals, with their original sequences and hashes.
    """

    events: tuple[RecordedEvent, ...]
    replayed: bool = False


#: What one request of a batch came to: its result, or the error that refused it alone.
AppendOutcome = AppendResult | CanonlogError

#: Called with the number of events handled so far during a long operation.
ProgressCallback = Callable[[int], None]


class EventReader(Protocol):
    """Reading a ledger's store: its events, head, state, keys and ceremonies.

    Reads change nothing and never refuse for halt or grant reasons; a ledger that
    does not exist reads as empty, except in ledger_state.
    """

    async def read_stream(
        self, ledger_id: str, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Returns a stream's events from from_version on, oldest first."""
        ...

    async def read_all(
        self, ledger_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Returns up to limit events with sequence greater than after, in sequence order."""
        ...

    async def read_execution(self, ledger_id: str, execution_id: str) -> list[RecordedEvent]:
        """Returns the events appended under execution_id (one request's, on one stream),
        in sequence order; empty when none were."""
        ...

    async def head(self, ledger_id: str) -> Head:
        """Returns the newest sequence and hash; sequence 0 and the genesis hash when empty."""
        ...

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        """Returns the grant and halt flag; raises LedgerNotFound for an unknown ledger."""
        ...

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        """Returns every key ever registered in the ledger, revoked ones included."""
        ...

    async def ceremonies(
        self, ledger_id: str, proposal_id: int | None = None
    ) -> list[Ceremony]:
        """Returns the ledger's ceremonies (or the one proposal) with their approvals,
        oldest first, approvals ordered by key id."""
        ...

    async def policies(self, ledger_id: str) -> list[PolicyInForce]:
        """Returns the governance policies the store holds for the ledger, oldest first;
        the last is the one in force (none: the ledger has no policy)."""
        ...


class ChainChecker(Protocol):
    """Recomputes a ledger's chain from its store, dividing the work as it sees fit."""

    async def verify_chain(self, reader: EventReader, ledger_id: str, *, after: Head,
                           until: int | None, signatures: SignaturePolicy,
                           progress: ProgressCallback | None) -> ChainReport:
        """Returns the report a single verifier gives over the events after after.sequence
        up to until (the head when None), the first linked to after.hash: the same breaks
        at the same sequences, and the store's policies and keys held against the chain.
        Raises VerificationIncomplete when part of the work could not be done."""
        ...


class EventAppender(Protocol):
    """The write path: the ledger's grant, and appends under it (see append_one for one
    request). The store assigns gap-free sequences and computes the hash chain."""

    async def acquire_grant(self, ledger_id: str, writer_id: str) -> WriterGrant:
        """Takes the ledger's write grant, creating the ledger if it is new.

        A new ledger, a released grant or the same writer id restarting gets the
        next epoch, recorded as a ``canonlog.writer_granted`` event. Raises
        GrantUnavailable when another writer holds it and SystemHalted when the
        ledger is halted.
        """
        ...

    async def release_grant(self, grant: WriterGrant) -> None:
        """Gives the grant up cleanly, recorded in the chain; raises StaleWriter if not held."""
        ...

    async def append_batch(
        self, grant: WriterGrant, requests: Sequence[AppendRequest]
    ) -> list[AppendOutcome]:
        """Appends many requests in one transaction, each succeeding or failing alone.

        Returns one outcome per request, in order. A request refused for its own
        reasons (ConcurrencyConflict, IdempotencyConflict, InvalidEvent) writes
        nothing and takes no sequence number. Raises, writing nothing at all, when
        the whole batch is refused: SystemHalted, StaleWriter, LedgerNotFound.
        """
        ...


class Governance(Protocol):
    """Chained changes to how a ledger is governed: halting, keys, witnessed ceremonies.

    Each step is recorded as an event of the ledger's own stream, and the store
    enforces the stored policy whatever the caller passes.
    """

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        """Halts the ledger with a chained event; returns False if it was already halted.

        A halted ledger resumes only through its resume ceremony (propose_resume,
        approve, resume_ceremony); there is no way around the witnesses."""
        ...

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        """Registers an agent's Ed25519 public key with a chained ``canonlog.key_added``
        event; returns its sequence. Raises InvalidEvent for a malformed or already
        registered key, and for a witness key: witnesses are the policy's."""
        ...

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        """Revokes a key from now on with a chained ``canonlog.key_revoked`` event;
        returns its sequence. Events signed before stay valid; later ones are refused."""
        ...

    async def establish_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str
                               ) -> int:
        """Establishes the ledger's first governance policy with a chained
        ``canonlog.policy_established`` event, creating the ledger when it does not exist
        (genesis) or giving an existing one its policy (adoption); returns its sequence.
        The administrator's step: in PostgreSQL no runtime role may run it. Raises
        PolicyAlreadyEstablished when the ledger has a policy, InvalidEvent for a policy
        that is not valid."""
        ...

    async def propose_policy(self, ledger_id: str, policy: GovernancePolicy, actor: str) -> int:
        """Opens a policy ceremony to replace the policy in force with policy, with a
        chained ``canonlog.ceremony_proposed`` event; returns the proposal id."""
        ...

    async def execute_policy_change(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        """Replaces the policy in force with the proposal's once the policy threshold of
        its witnesses approved, with a chained ``canonlog.policy_changed`` event carrying
        every counted signature; returns its sequence. Other open policy proposals are
        superseded."""
        ...

    async def propose_failover(self, ledger_id: str, target_writer_id: str, actor: str) -> int:
        """Opens a failover ceremony to move the grant to target_writer_id, made against
        the current grant and head, with a chained ``canonlog.ceremony_proposed`` event;
        returns the proposal id. Raises CeremonyNotApplicable when the grant is released
        or already held by target_writer_id, LedgerNotFound for an unknown ledger."""
        ...

    async def propose_resume(self, ledger_id: str, actor: str) -> int:
        """Opens the resume ceremony of the ledger's current halt with a chained
        ``canonlog.ceremony_proposed`` event, or returns the one already open (one per
        halt); returns its proposal id. Raises CeremonyNotApplicable when not halted."""
        ...

    async def approve(
        self, ledger_id: str, proposal_id: int, key_id: str, signature: bytes, actor: str
    ) -> int:
        """Records a witness's signature over the proposal's statement with a chained
        ``canonlog.ceremony_approved`` event; returns its sequence.

        The caller has verified the signature: the store checks that the proposal
        is open and still applies (CeremonyNotFound, CeremonyNotApplicable), and that
        key_id is a witness key of the policy in force that has not approved this
        proposal yet (ApprovalRefused).
        """
        ...

    async def execute_failover(self, ledger_id: str, proposal_id: int, actor: str) -> WriterGrant:
        """Moves the grant to the proposal's target writer at the next epoch, with a
        chained ``canonlog.writer_promoted`` event carrying the old grant and head, the
        new grant and every counted signature; returns the new grant.

        Raises CeremonyNotApplicable unless the proposal is an open failover proposal
        and the grant is still the one it was made against, and ThresholdNotMet when
        fewer witnesses of the policy in force approved than its failover threshold.
        Every ceremony step raises NoGovernancePolicy when the ledger has no policy.
        """
        ...

    async def resume_ceremony(self, ledger_id: str, proposal_id: int, actor: str) -> int:
        """Resumes the halted ledger through its resume ceremony with a chained
        ``canonlog.resumed`` event whose evidence is the ceremony; returns its sequence.

        Raises CeremonyNotApplicable unless the proposal is the open resume proposal
        of the current halt, WaitingPeriodNotOver (saying how long remains) until the
        policy's waiting period has passed since the halt was recorded, and
        ThresholdNotMet as execute_failover does, with the policy's resume threshold.
        """
        ...


class GovernedLedger(EventReader, Governance, Protocol):
    """What the governance use cases act on: the governance steps and the reads that
    show their state (halting, ceremonies, startup self-verification)."""


class EventLog(EventReader, EventAppender, Governance, Protocol):
    """A whole ledger store, as adapters implement it and the composition root wires it.

    Every adapter (PostgreSQL via asyncpg or psycopg, in-memory) assigns gap-free
    sequences, computes the hash chain by the same specification and raises the
    same errors; tests/contract holds the specification all of them pass. Use
    cases take the narrowest of its parts they need.
    """

    async def close(self) -> None:
        """Releases connections; the log is unusable afterwards."""
        ...


async def append_one(appender: EventAppender, grant: WriterGrant,
                     request: AppendRequest) -> AppendResult:
    """Appends one request atomically through append_batch; raises the error that refused it."""
    (outcome,) = await appender.append_batch(grant, [request])
    if isinstance(outcome, CanonlogError):
        raise outcome
    return outcome


class WriterLease(Protocol):
    """The exclusive, expiring right to be the writer of one ledger (liveness, not safety).

    The database grant is what makes a late write harmless; the lease keeps two
    live writers from contending. A lease instance belongs to one writer and one
    ledger, fixed at construction.
    """

    async def acquire(self) -> bool:
        """Takes the lease if nobody holds it; returns False when another holder has it."""
        ...

    async def renew(self) -> bool:
        """Extends the lease if this holder still has it; returns False once it is lost."""
        ...

    async def release(self) -> None:
        """Gives the lease up if this holder has it; never fails."""
        ...

    def valid_until(self) -> float:
        """The time.monotonic() instant after which the lease must be assumed lost (0 if not held)."""
        ...


class HaltChannel(Protocol):
    """One source of truth about whether a ledger is halted."""

    async def halt_reason(self, ledger_id: str) -> str | None:
        """Returns the halt reason, or None when not halted; raises HaltStateUnknown
        when the state cannot be determined (callers then refuse to write)."""
        ...

    async def announce(self, ledger_id: str, reason: str | None) -> None:
        """Tells every process sharing this channel that the ledger halted (or resumed: None)."""
        ...


class HeadStore(Protocol):
    """The writer's own record of the last head it saw acknowledged, kept outside the database."""

    def load(self, ledger_id: str) -> Head | None:
        """Returns the saved head, or None when none was saved."""
        ...

    def save(self, head: Head) -> None:
        """Records a head; a later head replaces an earlier one."""
        ...


class TrustedCheckpoints(Protocol):
    """Heads vouched for outside the database (signed checkpoints)."""

    async def newest(self, ledger_id: str) -> Head | None:
        """Returns the newest trusted head of the ledger, or None when there is none."""
        ...

    async def heads(self, ledger_id: str) -> list[Head]:
        """Returns every trusted head of the ledger, newest first (one per sequence and hash)."""
        ...

    async def tamper_evidence(self, ledger_id: str) -> list[str]:
        """Returns one line per checkpoint note that names a trusted key whose signature
        does not verify (a forged or edited checkpoint)."""
        ...


class DatabaseInspector(Protocol):
    """What the writer checks about its database before it accepts writes."""

    async def schema_problems(self) -> list[str]:
        """Returns every way the schema (triggers, functions, privileges, owners, role
        memberships) differs from what the shipped migrations define."""
        ...

    async def login_problems(self) -> list[str]:
        """Returns every way the writer's own login holds more power than a writer may."""
        ...

    async def durability_problems(self) -> list[str]:
        """Returns every setting under which an acknowledged commit could be lost."""
        ...


class EventNotifier(Protocol):
    """A wake-up hint that a ledger may have new events; never the events themselves."""

    async def wait(self, ledger_id: str, after: int, timeout: float) -> None:
        """Returns when events after `after` may exist, or after timeout seconds."""
        ...


class EventStore(Protocol):
    """What a domain service depends on: one ledger, written through its canonical writer.

    canonlog.open() gives the PostgreSQL implementation, canonlog.testing.open_in_memory()
    one that behaves the same (same errors, same hashes) for unit tests.
    """

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion = StreamState.ANY,
        execution_id: str | None = None,
        task_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        agent_id: str | None = None,
    ) -> AppendResult:
        """Appends events atomically to one stream and returns them as recorded."""
        ...

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Returns a stream's events from from_version on, oldest first."""
        ...

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Returns up to limit events after a sequence, in sequence order."""
        ...

    async def head(self) -> Head:
        """Returns the ledger's newest sequence and hash."""
        ...

    def subscribe(
        self, *, after: int = 0, page_size: int = 500, poll_interval: float = 1.0
    ) -> AsyncIterator[RecordedEvent]:
        """Yields every event after `after`, then new ones as they commit."""
        ...


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint note as one location holds it, and the cosignatures kept beside it.

    ``sequence`` is the one the location files it under (None when that cannot be
    told); only the note's own signed body says what it vouches for. Each
    cosignature kept beside it comes unparsed, to be judged on its own: it can
    never make the note unreadable. ``unreadable`` says why the location holds no
    note that could be read (not a regular file, too large), with note empty;
    None when the note was read.
    """

    location: str
    sequence: int | None
    note: bytes
    cosignatures: tuple[StoredCosignature, ...] = ()
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """A witness's cosignature as a location holds it beside a note: its content, or
    why it could not be read (``unreadable``, content then empty)."""

    location: str
    content: bytes
    unreadable: str | None = None


class CheckpointStore(Protocol):
    """A place outside the database where signed checkpoint notes are published, write-once."""

    async def publish(self, ledger_id: str, sequence: int, note: bytes) -> str:
        """Stores the note of the ledger's checkpoint at sequence and returns where it went.

        Raises CheckpointConflict, changing nothing, when a checkpoint of that
        ledger and sequence is already there: published checkpoints are never replaced.
        """
        ...

    async def load(self, ledger_id: str, sequence: int) -> StoredCheckpoint | None:
        """Returns the checkpoint filed under that sequence, or None."""
        ...

    async def list_checkpoints(self, ledger_id: str) -> list[StoredCheckpoint]:
        """Returns every checkpoint of the ledger, newest (highest sequence) first."""
        ...

    async def add_cosignature(self, ledger_id: str, sequence: int, key_name: str,
                              signature_line: bytes) -> bool:
        """Adds a witness's signature line to a published checkpoint, write-once per witness.

        Returns False when that witness's cosignature is already there; raises
        CheckpointConflict when there is no checkpoint at that sequence.
        """
        ...


class WitnessState(Protocol):
    """A witness's own memory of the newest checkpoint it cosigned, per origin."""

    def last_cosigned(self, origin: str) -> Head | None:
        """Returns the sequence and hash last cosigned for origin, or None."""
        ...

    def record(self, origin: str, head: Head) -> None:
        """Remembers head as the newest checkpoint cosigned for origin."""
        ...


class CanonicalWriter(Protocol):
    """The ledger's canonical writer as the write gateway uses it (EventWriterService)."""

    async def append(self, request: AppendRequest) -> AppendResult:
        """Appends one request atomically; raises the error that refused it."""
        ...


class WriteExecutor(Protocol):
    """Performs governed writes for the targets it is registered for.

    A plan is a pure function of the command, so that a commit retried after a crash
    performs the same write; a target fed from the chain (a projection, an external
    system behind the relay) is planned as ledger events the relay delivers.
    """

    def plan(self, command: WriteCommand) -> ExecutionPlan:
        """Returns the events that perform command; raises InvalidCommand when it cannot."""
        ...


#: The gateway's clock: the current time, timezone-aware.
Clock = Callable[[], datetime]


# -- sagas ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What a saga backend did: `applied` is false when the idempotency key had been
    applied before and nothing was done this time."""

    applied: bool
    result: Mapping[str, Any]


class SagaBackend(Protocol):
    """A store a saga step writes to, applying each idempotency key at most once."""

    kind: str
    operations: frozenset[str]

    async def apply(self, step: SagaStep) -> StepOutcome:
        """Runs the step's operation unless its idempotency key was applied before.

        Raises BackendUnavailable when the backend cannot be reached or answer (the
        effect may or may not exist), BackendRejected when it refuses the operation.
        """
        ...

    async def remove(self, step: SagaStep) -> None:
        """Removes what the step's operation created; succeeds when it is already gone.
        Raises BackendUnavailable or BackendRejected like apply."""
        ...


#: Undoes a step on its backend; idempotent, raising like SagaBackend.remove.
CompensationHandler = Callable[[SagaBackend, SagaStep], Awaitable[None]]


class SagaLocks(Protocol):
    """Exclusive hold of one saga across processes, so one driver advances it at a time."""

    def hold(self, saga_id: str) -> AbstractAsyncContextManager[bool]:
        """Enters with True while this process holds the saga, False when another does;
        never waits for it."""
        ...


class SagaObserver(Protocol):
    """Told of each saga step and compensation as it ends (metrics)."""

    def step_finished(self, backend: str, outcome: str, seconds: float, retry: bool) -> None: ...

    def compensation_finished(self, backend: str, outcome: str) -> None: ...


class Destination(Protocol):
    """A secondary store a relay consumer delivers the chain to.

    deliver() returns only once the store confirmed every event; the event's
    sequence is its idempotency key there, so delivering an event again changes
    nothing. Raises DestinationError when the store is down, slow or answers garbage.
    """

    async def deliver(self, events: Sequence[RecordedEvent]) -> None:
        """Writes the events (one ledger, ascending sequences) and waits for confirmation."""
        ...

    async def close(self) -> None:
        """Releases connections; delivering afterwards is an error."""
        ...


@runtime_checkable
class ReconcilableDestination(Destination, Protocol):
    """A destination that can say what it holds, for reconciliation."""

    async def digest(self, ledger_id: str, first: int, last: int) -> RangeDigest:
        """Returns the RangeDigest of the ledger's (sequence, hash) pairs it holds in
        first..last."""
        ...

    async def entries(self, ledger_id: str, first: int, last: int) -> dict[int, bytes]:
        """Returns the hash it holds for each of the ledger's sequences in first..last."""
        ...


class RelayStore(Protocol):
    """Durable consumer state: cursors, failed events and dead letters.

    Every change names the consumer; an unknown one raises ConsumerNotFound.
    """

    async def register(self, settings: ConsumerSettings) -> ConsumerState:
        """Creates the consumer at sequence 0 if new, else updates its policy; returns it."""
        ...

    async def consumer(self, name: str) -> ConsumerState:
        """Returns the consumer's stored state."""
        ...

    async def consumers(self) -> list[ConsumerState]:
        """Returns every registered consumer, by name."""
        ...

    async def advance(self, name: str, expected_seq: int, sequence: int, digest: bytes) -> bool:
        """Moves the cursor from expected_seq to (sequence, digest) and clears the failures
        it passes; returns False, changing nothing, when the cursor is elsewhere."""
        ...

    async def record_failure(self, name: str, sequence: int, digest: bytes, error: str,
                             retry_in: float) -> DeliveryFailure:
        """Counts a failed attempt at an event and when to try again; returns the record."""
        ...

    async def dead_letter(self, name: str, expected_seq: int, sequence: int, digest: bytes
                          ) -> bool:
        """Marks the failed event a dead letter and moves the cursor past it, in one step."""
        ...

    async def failures(self, name: str, *, dead_letters_only: bool = False,
                       limit: int = 1000) -> list[DeliveryFailure]:
        """Returns the consumer's failed events (or only dead letters), by sequence."""
        ...

    async def resolve(self, name: str, sequence: int) -> bool:
        """Forgets a failure once its event was delivered; False if there was none."""
        ...

    async def set_paused(self, name: str, paused: bool) -> ConsumerState:
        """Pauses or resumes the consumer; resuming also clears a stop."""
        ...

    async def stop(self, name: str, reason: str) -> None:
        """Stops the consumer until an operator resumes it, saying why."""
        ...


class ConsumerLease(Protocol):
    """One relay process per consumer: held while a relay runs, waited for by others."""

    async def acquire(self, consumer: str, *, wait: bool = True) -> bool:
        """Takes the consumer's lease, waiting for it when wait; returns whether held."""
        ...

    async def held(self) -> bool:
        """Returns whether the lease is still held (its session alive)."""
        ...

    async def release(self) -> None:
        """Gives the lease up; harmless when not held."""
        ...


class IdempotencyStore(Protocol):
    """Results of outside requests by key, each kept until it expires."""

    async def get(self, key: str) -> Any | None:
        """Returns the stored result unless missing or expired."""
        ...

    async def put_if_absent(self, key: str, result: Any, ttl: float) -> Any:
        """Stores the result unless a live one is there; returns the one that holds now."""
        ...

    async def delete_expired(self) -> int:
        """Deletes expired records; returns how many."""
        ...
