"""The pure ceremony rules every party shares: applicability and counted witnesses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.domain.ceremony import (
    FAILOVER,
    RESUME,
    Ceremony,
    approval_standing,
    obstacle,
    witnesses_behind,
)
from canonlog.domain.events import LedgerState, RegisteredKey
from tests.support.keys import public_bytes

FAILOVER_PROPOSAL = Ceremony("main", 1, FAILOVER, "open", "w1", 3, "w2", 10, bytes(32), None,
                             None, "ops", 11, datetime(2025, 1, 1, tzinfo=UTC), None)
RESUME_PROPOSAL = replace(FAILOVER_PROPOSAL, kind=RESUME, target_writer_id=None,
                          head_sequence=None, head_hash=None, halt_sequence=20,
                          halt_hash=bytes(32))
GRANTED = LedgerState("main", "w1", 3, halted=False, halt_reason=None)
HALTED = replace(GRANTED, halted=True, halt_reason="drill")


def test_a_proposal_applies_only_to_the_grant_or_halt_it_was_made_against() -> None:
    assert obstacle(FAILOVER_PROPOSAL, GRANTED, None) is None
    assert obstacle(FAILOVER_PROPOSAL, replace(GRANTED, epoch=4), None) == "grant_moved"
    assert obstacle(FAILOVER_PROPOSAL, replace(GRANTED, writer_id=None), None) == "grant_moved"
    assert obstacle(replace(FAILOVER_PROPOSAL, status="superseded"), GRANTED, None) == "closed"
    assert obstacle(RESUME_PROPOSAL, HALTED, 20) is None
    assert obstacle(RESUME_PROPOSAL, GRANTED, 20) == "halt_over"
    assert obstacle(RESUME_PROPOSAL, HALTED, 25) == "halt_over"
    assert obstacle(replace(RESUME_PROPOSAL, status="executed"), HALTED, 20) == "closed"


def test_an_approval_counts_by_an_active_witness_key_with_a_valid_signature() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    witness = RegisteredKey("main", "w-a", "witness", "alice", public_bytes(private), 2)
    keys = {"w-a": witness, "w-b": replace(witness, key_id="w-b", added_seq=3),
            "agent": replace(witness, key_id="agent", purpose="agent", owner_id="bot")}
    content = b"statement"
    good = approval_standing("w-a", keys, at=None, signature=private.sign(content),
                             content=content)
    assert good.counts and good.signature_valid
    assert not approval_standing("w-a", keys, at=None, signature=bytes(64),
                                 content=content).counts
    assert approval_standing("w-a", keys, at=None).signature_valid is None
    assert not approval_standing("agent", keys, at=None).counts
    assert not approval_standing("nobody", keys, at=None).counts
    revoked = {**keys, "w-a": replace(witness, revoked_seq=30)}
    assert not approval_standing("w-a", revoked, at=None).counts  # now: any revocation
    assert not approval_standing("w-a", revoked, at=31).counts
    assert approval_standing("w-a", revoked, at=30).counts  # revoked by a later event
    standings = [approval_standing(k, keys, at=None) for k in ("w-a", "w-b", "agent")]
    assert witnesses_behind(standings) == 1  # two keys of one witness, and an agent key
