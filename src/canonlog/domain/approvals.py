"""Which approvals of a write ticket count, and why one is refused.

An approval counts when its key is one of the policy's approvers' keys, the
approver may approve the ticket's task, the key is registered in the ledger to
that approver (an agent key) and was not revoked before the approval, and the
signature verifies over the ticket's approval statement. A refused approval or a
commit refused for missing approvals is a decision of the gateway: a Refusal
names the step, the rule (kind) and what the rule was about (subject), so that
the same decision about the same ticket is recorded once however often it is
asked for (see domain/tickets.py, ``gateway.refused``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from canonlog.domain.events import RegisteredKey
from canonlog.domain.gateway import Approver, GatewayPolicies
from canonlog.domain.signing import signature_is_valid
from canonlog.domain.tickets import Ticket


@dataclass(frozen=True, slots=True)
class Refusal:
    """A step the gateway refused: approve or commit, the rule's kind, what it was about
    (a key id, an approver, an approval count; empty for a key nobody registered, so
    that unknown keys cannot make records without end) and the message."""

    step: str
    kind: str
    subject: str
    reason: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two refusals of one ticket the same decision."""
        return (self.step, self.kind, self.subject)


def judge_approval(policies: GatewayPolicies, ticket: Ticket, key_id: str, signature: object,
                   keys: Iterable[RegisteredKey], statement: bytes, ledger_id: str
                   ) -> Approver | Refusal:
    """Returns the approver whose approval of ticket this is, or why it does not count;
    keys are the ledger's registered keys, statement the ticket's approval statement."""
    execution_id, task_id = ticket.command.execution_id, ticket.command.task_id
    approver = policies.approver_of_key(key_id)
    if approver is None:
        return Refusal("approve", "unknown_key", "", f"key {key_id!r} is not an approver's "
                                                     f"key for task {task_id!r}")
    task = policies.tasks.get(task_id)
    if task is None or not task.may_approve(approver):
        return Refusal("approve", "not_an_approver", key_id, f"key {key_id!r} is not an "
                                                             f"approver's key for task {task_id!r}")
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None:
        return Refusal("approve", "key_not_registered", key_id,
                       f"key {key_id!r} is not registered in ledger {ledger_id}")
    if key.revoked_seq is not None:
        return Refusal("approve", "key_revoked", key_id,
                       f"key {key_id!r} was revoked at sequence {key.revoked_seq}")
    if key.purpose != "agent" or key.owner_id != approver.name:
        return Refusal("approve", "key_of_another", key_id,
                       f"key {key_id!r} is registered to {key.owner_id!r} ({key.purpose}), "
                       f"not to approver {approver.name!r}")
    if ticket.approved_by(approver.name):
        return Refusal("approve", "already_approved", approver.name,
                       f"{approver.name} has approved ticket {execution_id} already; "
                       "approvals count distinct approvers")
    if not isinstance(signature, bytes) or not signature_is_valid(key.public_key, signature,
                                                                  statement):
        return Refusal("approve", "bad_signature", key_id,
                       f"the signature by key {key_id!r} does not verify over the approval "
                       f"statement of ticket {execution_id}")
    return approver


def counted_approvers(policies: GatewayPolicies, ticket: Ticket,
                      keys: Mapping[str, RegisteredKey], statement: bytes) -> set[str]:
    """The distinct approvers whose recorded approval of ticket counts: by a key of theirs
    the policy names, registered to them and active when they approved, with a
    signature that verifies over the ticket's statement."""
    task = policies.tasks.get(ticket.command.task_id)
    counted = set()
    for approval in ticket.approvals:
        approver = policies.approver_of_key(approval.key_id)
        key = keys.get(approval.key_id)
        if (approver is not None and task is not None and approver.name == approval.approver
                and task.may_approve(approver) and key is not None
                and key.purpose == "agent" and key.owner_id == approver.name
                and (key.revoked_seq is None or key.revoked_seq > approval.sequence)
                and signature_is_valid(key.public_key, approval.signature, statement)):
            counted.add(approver.name)
    return counted
