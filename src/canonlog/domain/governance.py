"""A ledger's governance policy: its witnesses, and what each ceremony needs.

The policy is chained in the ledger's own stream: established once
(canonlog.policy_established, "genesis" for a new ledger, "adoption" for one
created before policies) and replaced only by a policy ceremony that meets the
policy in force (canonlog.policy_changed). Its document, as the events carry it:

``{"witnesses": [{"key_id", "owner_id", "public_key"}, ...], "thresholds":
{"failover", "resume", "policy"}, "resume_wait_seconds", "proposers": [role, ...]}``

Witnesses are the policy's keys, each counted once. A policy ceremony's witnesses
sign ``policy/v1 = text("canonlog/ceremony/policy/v1") || text(ledger_id) ||
i64(proposal_id) || i64(policy_sequence) || sha256(canonical JSON of the proposed
policy)``, where policy_sequence is the event that established the policy in force.

The rules here are written once and used by the in-memory store (as
sql/0004_governance_policy.sql enforces them in PostgreSQL), the application and
the verifier, which replays the policy along the chain (PolicyReplay).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from canonlog.domain.canonical import canonical_json
from canonlog.domain.hashing import frame_i64, frame_text

POLICY_STATEMENT_V1: Final = "canonlog/ceremony/policy/v1"
POLICY_ESTABLISHED: Final = "canonlog.policy_established"
POLICY_CHANGED: Final = "canonlog.policy_changed"
#: The role whose members may open proposals unless a policy says otherwise.
DEFAULT_PROPOSERS: Final = ("canonlog_operator",)

ThresholdKind = Literal["failover", "resume", "policy"]
_KINDS: Final = ("failover", "resume", "policy")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PolicyWitness:
    """One witness key of a policy: who holds it, and its Ed25519 public key."""

    key_id: str
    owner_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class GovernancePolicy:
    """Who the witnesses are, how many of them each ceremony kind needs, how long a
    halt lasts at least, and the database roles whose members may open proposals.
    Witnesses are held in key id order, as the database stores them."""

    witnesses: tuple[PolicyWitness, ...]
    failover_threshold: int
    resume_threshold: int
    policy_threshold: int
    resume_wait_seconds: int
    proposers: tuple[str, ...] = DEFAULT_PROPOSERS

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(
            sorted(self.witnesses, key=lambda w: w.key_id.encode())))

    def threshold(self, kind: ThresholdKind) -> int:
        return {"failover": self.failover_threshold, "resume": self.resume_threshold,
                "policy": self.policy_threshold}[kind]

    def witness(self, key_id: str) -> PolicyWitness | None:
        for witness in self.witnesses:
            if witness.key_id == key_id:
                return witness
        return None

    def document(self) -> dict[str, Any]:
        """The policy as the chain and the database hold it: witnesses by key id."""
        return {
            "witnesses": [{"key_id": w.key_id, "owner_id": w.owner_id,
                           "public_key": w.public_key.hex()} for w in self.witnesses],
            "thresholds": {"failover": self.failover_threshold, "resume": self.resume_threshold,
                           "policy": self.policy_threshold},
            "resume_wait_seconds": self.resume_wait_seconds,
            "proposers": list(self.proposers),
        }

    def digest(self) -> bytes:
        """SHA-256 of the document's canonical JSON (keys in code point order, no spaces)."""
        return hashlib.sha256(canonical_json(self.document(), what="policy")).digest()


def no_policy_message(ledger_id: str) -> str:
    """How a ceremony on a ledger without a policy is refused (NoGovernancePolicy)."""
    return (f"ledger {ledger_id} has no governance policy, so it runs no ceremonies; the "
            "administrator establishes one with `canonlog ledger adopt-policy --witness FILE "
            "... --threshold N` (docs/operations.md)")


def policy_problem(document: Any) -> str | None:
    """What is wrong with a policy document, or None: canonlog.policy_problem_v1's rules
    and words."""
    if not isinstance(document, dict) or sorted(document) != [
            "proposers", "resume_wait_seconds", "thresholds", "witnesses"]:
        return "a policy is an object of witnesses, thresholds, resume_wait_seconds and proposers"
    witnesses = document["witnesses"]
    if not isinstance(witnesses, list) or not witnesses:
        return "a policy needs at least one witness"
    for w in witnesses:
        if (not isinstance(w, dict) or sorted(w) != ["key_id", "owner_id", "public_key"]
                or not all(isinstance(w[k], str) for k in w)
                or not 1 <= len(w["key_id"]) <= 256 or not 1 <= len(w["owner_id"]) <= 256
                or not _HEX_KEY.fullmatch(w["public_key"])):
            return ("a witness is a key_id and owner_id of 1 to 256 characters and a public_key "
                    "of 64 lowercase hex digits")
    n = len(witnesses)
    if len({w["key_id"] for w in witnesses}) != n or len({w["public_key"] for w in witnesses}) != n:
        return "the witnesses of a policy have distinct key ids and distinct public keys"
    thresholds = document["thresholds"]
    if not isinstance(thresholds, dict) or sorted(thresholds) != sorted(_KINDS):
        return "a policy has a threshold for failover, resume and policy"
    for kind in _KINDS:
        value = thresholds[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
            return f"the {kind} threshold must be a whole number from 1 to the {n} witnesses"
    wait = document["resume_wait_seconds"]
    if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= 9_223_372_036:
        return "resume_wait_seconds must be a whole number of seconds, 0 or more"
    proposers = document["proposers"]
    if (not isinstance(proposers, list) or not proposers
            or not all(isinstance(r, str) and 1 <= len(r) <= 63 for r in proposers)):
        return "proposers must name at least one database role"
    return None


def policy_from_document(document: Any) -> GovernancePolicy:
    """Reads a policy document; raises ValueError with policy_problem's words."""
    problem = policy_problem(document)
    if problem is not None:
        raise ValueError(problem)
    t = document["thresholds"]
    return GovernancePolicy(
        witnesses=tuple(PolicyWitness(w["key_id"], w["owner_id"], bytes.fromhex(w["public_key"]))
                        for w in document["witnesses"]),
        failover_threshold=t["failover"], resume_threshold=t["resume"],
        policy_threshold=t["policy"], resume_wait_seconds=document["resume_wait_seconds"],
        proposers=tuple(document["proposers"]))


def policy_statement_v1(*, ledger_id: str, proposal_id: int, policy_sequence: int,
                        policy: GovernancePolicy) -> bytes:
    """Returns the bytes a witness signs to approve replacing the policy established at
    policy_sequence with policy (version 1)."""
    return b"".join((frame_text(POLICY_STATEMENT_V1), frame_text(ledger_id),
                     frame_i64(proposal_id), frame_i64(policy_sequence), policy.digest()))


def counted_keys(policy: GovernancePolicy, approvals: Iterable[tuple[str, bytes | None]]
                 ) -> list[str]:
    """The key ids of approvals (key id, public key it was made under) that count under
    policy: keys of its witness set under the same public key, each once, by key id."""
    counted = {key_id for key_id, public_key in approvals
               if (w := policy.witness(key_id)) is not None and w.public_key == public_key}
    return sorted(counted, key=str.encode)


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """A policy and the sequence of the event that established it."""

    sequence: int
    policy: GovernancePolicy


def policy_in_force_at(history: Mapping[int, GovernancePolicy], sequence: int
                       ) -> PolicyInForce | None:
    """The policy in force just before sequence, from {establishing sequence: policy}."""
    earlier = [s for s in history if s < sequence]
    if not earlier:
        return None
    newest = max(earlier)
    return PolicyInForce(newest, history[newest])
