"""The write gateway's rules: the command, task policies, decisions and the approval statement.

A governed write is a WriteCommand. Its task's TaskPolicy (declared by the
operator, recorded in the chain as a numbered policy version) decides whether it
may be requested at all: no policy, a target or operation the policy does not
allow, or a payload over the policy's limit is a denial. Approvals are Ed25519
signatures by the policy's approvers over the ticket's approval statement,
version 1 (``approval_statement_v1``): the canonical JSON (domain/canonical.py)
of

``{"statement": "canonlog/gateway/approval/v1", "ledger_id", "ticket",
"task_id", "execution_id", "target", "operation", "payload_sha256", "summary",
"requested_by", "policy_version", "requested_seq", "expires_at"}``

where ticket is the execution id, payload_sha256 the hex SHA-256 of the canonical
payload, requested_seq the sequence of the ticket's ``gateway.requested`` event
and expires_at its RFC 3339 UTC expiry, so a signature over one ticket never
counts for another.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from canonlog.domain.canonical import RawJson, canonical_json
from canonlog.domain.errors import InvalidCommand, InvalidEvent
from canonlog.domain.events import (
    SYSTEM_STREAM_PREFIX,
    ExpectedVersion,
    NewEvent,
    StreamState,
    check_name,
)

APPROVAL_STATEMENT_V1: Final = "canonlog/gateway/approval/v1"
#: Streams the gateway keeps for itself: one per ticket, and the policy versions.
TICKET_STREAM_PREFIX: Final = "gateway-ticket/"
POLICY_STREAM: Final = "gateway-policy"
#: Execution ids are at most this long, so that a ticket's stream id fits the name limit.
MAX_EXECUTION_ID: Final = 200
MAX_SUMMARY: Final = 1000
#: What an execution id may not contain: it names its ticket in URL paths, where these
#: end or split a path segment, or are rewritten by clients (RFC 3986, section 3.3).
URL_UNSAFE: Final = "/\\?#%"
#: The gateway records a ticket's execution id in the ledger under this prefix. A
#: ticket's own execution id holds no "/", so no execution id a caller chooses for
#: a direct append equals a recorded one unless it starts so; with the gateway's one
#: door closed, direct appends may not (so nobody can take a ticket's execution id
#: first and so block its commit).
RECORDED_EXECUTION_PREFIX: Final = "gateway/"


class Operation(enum.StrEnum):
    """What a governed write does to its target."""

    CREATE = "create"
    UPDATE = "update"
    UPSERT = "upsert"
    DELETE = "delete"
    APPEND = "append"


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """One governed write as a caller requests it; build it with WriteCommand.create."""

    task_id: str
    execution_id: str
    target: str
    operation: Operation
    payload: bytes
    summary: str
    requested_by: str

    @classmethod
    def create(cls, *, task_id: object, execution_id: object, target: object,
               operation: object, payload: RawJson, summary: object = "",
               requested_by: object) -> WriteCommand:
        """Validates a command; raises InvalidCommand naming what is wrong."""
        try:
            check_name(task_id, "task_id")
            check_name(execution_id, "execution_id")
            check_name(target, "target")
            check_name(requested_by, "requested_by")
            canonical = canonical_json(payload, what="payload")
        except InvalidEvent as exc:
            raise InvalidCommand(str(exc)) from exc
        assert isinstance(task_id, str) and isinstance(execution_id, str)
        assert isinstance(target, str) and isinstance(requested_by, str)
        if len(execution_id) > MAX_EXECUTION_ID:
            raise InvalidCommand(f"execution_id is {len(execution_id)} characters; the limit "
                                 f"is {MAX_EXECUTION_ID}")
        unsafe = sorted(set(execution_id) & set(URL_UNSAFE))
        if unsafe or execution_id in (".", ".."):
            raise InvalidCommand(
                f"execution_id {execution_id!r} names its ticket in URLs, so it may not be . or "
                f".. or contain any of {' '.join(URL_UNSAFE)} (it contains "
                f"{' '.join(unsafe) or execution_id})")
        if target.startswith((SYSTEM_STREAM_PREFIX, TICKET_STREAM_PREFIX, POLICY_STREAM)):
            raise InvalidCommand(f"target {target!r} is a stream the ledger or the gateway "
                                 "keeps for itself")
        try:
            op = Operation(operation if isinstance(operation, str) else "")
        except ValueError as exc:
            raise InvalidCommand(f"operation must be one of "
                                 f"{', '.join(o.value for o in Operation)}, got {operation!r}"
                                 ) from exc
        if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
            raise InvalidCommand(f"summary must be a string of at most {MAX_SUMMARY} characters")
        return cls(task_id, execution_id, target, op, canonical, summary, requested_by)

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    def digest(self) -> str:
        """What makes two commands the same: every field, the payload by its hash."""
        return hashlib.sha256(canonical_json(self.audit_fields())).hexdigest()

    def audit_fields(self) -> dict[str, Any]:
        """The command as audit events carry it: the payload only by its SHA-256."""
        return {"task_id": self.task_id, "execution_id": self.execution_id,
                "target": self.target, "operation": self.operation.value,
                "summary": self.summary, "requested_by": self.requested_by,
                "payload_sha256": self.payload_sha256}


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """How a governed write is performed: events appended to one stream of the ledger,
    under an expected version, together with the write's audit event."""

    stream_id: str
    events: tuple[NewEvent, ...]
    expected_version: ExpectedVersion = StreamState.ANY


class LedgerExecutor:
    """The default executor: the write is one event on the target's stream of the ledger,
    of type ``write.<operation>`` with the command's payload. create expects a new
    stream, update and delete an existing one; upsert and append take it as it is."""

    _EXPECTED: Final[Mapping[Operation, ExpectedVersion]] = {
        Operation.CREATE: StreamState.NO_STREAM, Operation.UPDATE: StreamState.STREAM_EXISTS,
        Operation.DELETE: StreamState.STREAM_EXISTS, Operation.UPSERT: StreamState.ANY,
        Operation.APPEND: StreamState.ANY,
    }

    def plan(self, command: WriteCommand) -> ExecutionPlan:
        event = NewEvent.create(f"write.{command.operation.value}", command.payload)
        return ExecutionPlan(command.target, (event,), self._EXPECTED[command.operation])


def ticket_stream(execution_id: str) -> str:
    """The stream of the ticket of an execution id (a ticket is named by its execution id)."""
    return TICKET_STREAM_PREFIX + execution_id


def recorded_execution_id(execution_id: str) -> str:
    """The execution id the ledger records for a ticket's commit and closing events."""
    return RECORDED_EXECUTION_PREFIX + execution_id


@dataclass(frozen=True, slots=True)
class Approver:
    """Someone whose signature can approve: their registered key ids and their roles."""

    name: str
    key_ids: frozenset[str]
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """What one task may write, and what it needs before it is written.

    targets are patterns (``*`` matches any run of characters); approvals counts
    distinct approvers, each of whom must be named in approvers or hold one of
    approver_roles (either list empty: no restriction by it).
    """

    task_id: str
    targets: tuple[str, ...]
    operations: frozenset[Operation]
    approvals: int = 0
    approvers: frozenset[str] = frozenset()
    approver_roles: frozenset[str] = frozenset()
    ticket_ttl_seconds: int = 86_400
    max_payload_bytes: int = 65_536

    def may_approve(self, approver: Approver) -> bool:
        by_name = not self.approvers or approver.name in self.approvers
        by_role = not self.approver_roles or bool(self.approver_roles & approver.roles)
        return by_name and by_role


@dataclass(frozen=True, slots=True)
class GatewayPolicies:
    """The operator's policy document: approvers, task policies and the executor of each
    target pattern, with the canonical bytes the chain records."""

    approvers: Mapping[str, Approver]
    tasks: Mapping[str, TaskPolicy]
    executors: Mapping[str, str]
    document: bytes = field(default=b"{}", compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.document).hexdigest()

    def approver_of_key(self, key_id: str) -> Approver | None:
        for approver in self.approvers.values():
            if key_id in approver.key_ids:
                return approver
        return None

    def governs(self, stream_id: str) -> bool:
        """True for the streams only the gateway writes: its own, and every target an
        executor is registered for."""
        return (stream_id.startswith(TICKET_STREAM_PREFIX) or stream_id == POLICY_STREAM
                or self.executor_for(stream_id) is not None)

    def executor_for(self, target: str) -> str | None:
        """The name of the executor registered for the first pattern matching target."""
        for pattern, executor in self.executors.items():
            if fnmatch.fnmatchcase(target, pattern):
                return executor
        return None


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """The policy document in force and its version: the stream version of the
    ``gateway.policy_loaded`` event that recorded it."""

    version: int
    policies: GatewayPolicies


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a command may not be requested: a kind (the error it raises) and a message."""

    kind: str
    reason: str


def judge(command: WriteCommand, policies: GatewayPolicies) -> Denial | None:
    """Returns why the policies refuse the command, or None when it may be requested.
    Deny by default: a task without a policy is refused."""
    policy = policies.tasks.get(command.task_id)
    if policy is None:
        return Denial("unknown_task", f"no policy allows task {command.task_id!r}")
    if policies.executor_for(command.target) is None:
        return Denial("unknown_target", f"no executor is registered for target "
                                        f"{command.target!r}")
    if not any(fnmatch.fnmatchcase(command.target, p) for p in policy.targets):
        return Denial("target_not_allowed", f"task {command.task_id!r} may not write target "
                                            f"{command.target!r}")
    if command.operation not in policy.operations:
        return Denial("operation_not_allowed", f"task {command.task_id!r} may not "
                                               f"{command.operation.value} its targets")
    if len(command.payload) > policy.max_payload_bytes:
        return Denial("payload_too_large", f"the payload is {len(command.payload)} bytes in "
                                           f"canonical form; task {command.task_id!r} allows "
                                           f"{policy.max_payload_bytes}")
    return None


def approval_statement_v1(*, ledger_id: str, command: WriteCommand, policy_version: int,
                          requested_seq: int, expires_at: datetime) -> bytes:
    """Returns the bytes an approver signs for a ticket (approval statement version 1)."""
    return canonical_json({
        "statement": APPROVAL_STATEMENT_V1, "ledger_id": ledger_id,
        "ticket": command.execution_id, **command.audit_fields(),
        "policy_version": policy_version, "requested_seq": requested_seq,
        "expires_at": rfc3339(expires_at),
    })


def rfc3339(moment: datetime) -> str:
    """A timestamp as the gateway's events and statements write it: UTC, microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)

