"""Resuming a halted ledger in tests: the witnessed ceremony, at its smallest.

A ledger resumes only through its resume ceremony; these helpers run it with one
witness, a threshold of 1 and no waiting period, through any EventLog.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.ports import EventLog
from canonlog.domain.ceremony import resume_statement_v1
from tests.support.keys import public_bytes

#: The witness resume_by_ceremony registers; a fixed seed keeps its signatures, and so
#: the payloads of the ceremony's events, the same from one adapter to the next.
RESUME_WITNESS_KEY_ID = "w-resume"
RESUME_WITNESS_OWNER = "resume-witness"
RESUME_WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes([42]) * 32)


async def register_resume_witness(log: EventLog, ledger_id: str = "main",
                                  actor: str = "ops") -> None:
    """Registers the resume witness key in the ledger unless it is registered already."""
    if any(k.key_id == RESUME_WITNESS_KEY_ID for k in await log.list_keys(ledger_id)):
        return
    await log.add_key(ledger_id, RESUME_WITNESS_KEY_ID, "witness", RESUME_WITNESS_OWNER,
                      public_bytes(RESUME_WITNESS_KEY), actor)


async def resume_by_ceremony(log: EventLog, ledger_id: str = "main",
                             actor: str = "ops") -> int:
    """Resumes the halted ledger as an operator must: registers the resume witness if
    needed, proposes, approves with the witness's signature over the resume statement
    and executes with threshold 1 and no wait. Returns the canonlog.resumed sequence.

    Adds up to four chained events: canonlog.key_added (first time only),
    canonlog.ceremony_proposed, canonlog.ceremony_approved, canonlog.resumed.
    Raises what the ceremony steps raise (CeremonyNotApplicable when not halted).
    """
    await register_resume_witness(log, ledger_id, actor)
    proposal_id = await log.propose_resume(ledger_id, actor)
    (ceremony,) = await log.ceremonies(ledger_id, proposal_id)
    assert ceremony.halt_sequence is not None and ceremony.halt_hash is not None
    signature = RESUME_WITNESS_KEY.sign(resume_statement_v1(
        ledger_id=ledger_id, halt_sequence=ceremony.halt_sequence,
        halt_hash=ceremony.halt_hash))
    await log.approve(ledger_id, proposal_id, RESUME_WITNESS_KEY_ID, signature, actor)
    return await log.resume_ceremony(ledger_id, proposal_id, 1, 0, actor)
