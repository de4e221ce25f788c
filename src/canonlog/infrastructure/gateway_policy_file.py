"""The operator's gateway policy file (TOML), validated with pydantic.

The file declares approvers (their registered key ids and roles), the executor of
each target pattern, and one policy per task id; anything else in it is an error.
Its canonical JSON is what the gateway records in the chain as a policy version.
See docs/how-to/write-gateway.md for the format.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import GatewayPolicyError
from canonlog.domain.gateway import Approver, GatewayPolicies, Operation, TaskPolicy

_Name = Annotated[str, Field(min_length=1, max_length=256)]
#: The largest payload a policy may allow: the staged copy must fit the ledger's limit.
MAX_POLICY_PAYLOAD = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApproverModel(_Strict):
    key_ids: list[_Name] = Field(min_length=1)
    roles: list[_Name] = []


class TaskModel(_Strict):
    targets: list[_Name] = Field(min_length=1)
    operations: list[Operation] = Field(min_length=1)
    approvals: int = Field(default=0, ge=0, le=100)
    approvers: list[_Name] = []
    approver_roles: list[_Name] = []
    ticket_ttl_seconds: int = Field(default=86_400, ge=1, le=366 * 86_400)
    max_payload_bytes: int = Field(default=65_536, ge=2, le=MAX_POLICY_PAYLOAD)


class PolicyFileModel(_Strict):
    approvers: dict[_Name, ApproverModel] = {}
    executors: dict[_Name, _Name] = Field(min_length=1)
    tasks: dict[_Name, TaskModel] = {}

    @model_validator(mode="after")
    def _consistent(self) -> PolicyFileModel:
        owners: dict[str, str] = {}
        for name, approver in self.approvers.items():
            for key_id in approver.key_ids:
                if owners.setdefault(key_id, name) != name:
                    raise ValueError(f"key {key_id!r} is listed for {owners[key_id]!r} and "
                                     f"{name!r}")
        for task_id, task in self.tasks.items():
            unknown = sorted(set(task.approvers) - set(self.approvers))
            if unknown:
                raise ValueError(f"task {task_id}: unknown approver(s) {', '.join(unknown)}")
            if task.approvals and not any(
                    (not task.approvers or name in task.approvers)
                    and (not task.approver_roles or set(task.approver_roles) & set(a.roles))
                    for name, a in self.approvers.items()):
                raise ValueError(f"task {task_id} needs approvals that no approver can give")
        return self


def parse_policies(text: str, source: str = "policy") -> GatewayPolicies:
    """Parses and validates a policy document; raises GatewayPolicyError naming the problem."""
    try:
        model = PolicyFileModel.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise GatewayPolicyError(f"{source} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
                             for e in exc.errors())
        raise GatewayPolicyError(f"{source} is not a valid gateway policy: {problems}") from exc
    return GatewayPolicies(
        approvers={name: Approver(name, frozenset(a.key_ids), frozenset(a.roles))
                   for name, a in model.approvers.items()},
        tasks={task_id: TaskPolicy(
            task_id=task_id, targets=tuple(t.targets), operations=frozenset(t.operations),
            approvals=t.approvals, approvers=frozenset(t.approvers),
            approver_roles=frozenset(t.approver_roles), ticket_ttl_seconds=t.ticket_ttl_seconds,
            max_payload_bytes=t.max_payload_bytes) for task_id, t in model.tasks.items()},
        executors=dict(model.executors),
        document=canonical_json(model.model_dump(mode="json")),
    )


def load_policy_file(path: Path) -> GatewayPolicies:
    """Reads and validates the operator's policy file; raises GatewayPolicyError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayPolicyError(f"cannot read the gateway policy file {path}: {exc}") from exc
    return parse_policies(text, str(path))
