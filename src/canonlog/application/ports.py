"""Every port of the application layer, as Protocols the adapters implement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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


class EventLog(Protocol):
    """A ledger store whose integrity rules are enforced below the caller.

    Every adapter (PostgreSQL via asyncpg or psycopg, in-memory) assigns gap-free
    sequences, computes the hash chain by the same specification and raises the
    same errors; tests/contract holds the specification all of them pass.
    """

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

    async def append(self, grant: WriterGrant, request: AppendRequest) -> AppendResult:
        """Appends one request atomically; raises the error that refused it."""
        ...

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

    async def head(self, ledger_id: str) -> Head:
        """Returns the newest sequence and hash; sequence 0 and the genesis hash when empty."""
        ...

    async def ledger_state(self, ledger_id: str) -> LedgerState:
        """Returns the grant and halt flag; raises LedgerNotFound for an unknown ledger."""
        ...

    async def halt(self, ledger_id: str, reason: str, actor: str) -> bool:
        """Halts the ledger with a chained event; returns False if it was already halted."""
        ...

    async def resume(self, ledger_id: str, actor: str, evidence: dict[str, Any]) -> bool:
        """Resumes a halted ledger with a chained event; returns False if it was not halted."""
        ...

    async def add_key(
        self, ledger_id: str, key_id: str, purpose: str, owner_id: str, public_key: bytes,
        actor: str,
    ) -> int:
        """Registers an agent's or witness's Ed25519 public key with a chained
        ``canonlog.key_added`` event; returns its sequence. Raises InvalidEvent for a
        malformed or already registered key."""
        ...

    async def revoke_key(self, ledger_id: str, key_id: str, actor: str, reason: str) -> int:
        """Revokes a key from now on with a chained ``canonlog.key_revoked`` event;
        returns its sequence. Events signed before stay valid; later ones are refused."""
        ...

    async def list_keys(self, ledger_id: str) -> list[RegisteredKey]:
        """Returns every key ever registered in the ledger, revoked ones included."""
        ...

    async def close(self) -> None:
        """Releases connections; the log is unusable afterwards."""
        ...


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


class DatabaseInspector(Protocol):
    """What the writer checks about its database before it accepts writes."""

    async def schema_problems(self) -> list[str]:
        """Returns every way the integrity triggers and functions differ from the shipped ones."""
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
