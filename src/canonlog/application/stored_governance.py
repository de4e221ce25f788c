"""The store's governance held against the chain: the policies and the keys the
database holds, compared with those the chain records.

The database enforces the stored policy and the stored keys; the chain is what
witnesses can check. A policy row or a key row the chain does not record as it
stands (written into the table by a superuser, or edited there) is a break at
the sequence the row claims, and so is a chained one the store no longer holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from canonlog.application.ports import EventReader
from canonlog.domain.events import RegisteredKey
from canonlog.domain.governance import PolicyInForce

if TYPE_CHECKING:
    from canonlog.application.verifier import ChainVerifier


async def compare_stored_governance(verifier: ChainVerifier, reader: EventReader,
                                    ledger_id: str, *, to_head: bool) -> None:
    """compare_stored_policies and compare_stored_keys with what the store holds."""
    compare_stored_policies(verifier, await reader.policies(ledger_id), to_head=to_head)
    compare_stored_keys(verifier, await reader.list_keys(ledger_id), to_head=to_head)


def compare_stored_policies(verifier: ChainVerifier, stored: Iterable[PolicyInForce], *,
                            to_head: bool = True) -> None:
    """Holds the policies the database enforces against those the chain established,
    after the verifier's start (to_head: up to any sequence; else up to the last one
    checked): a stored policy the chain does not record at its sequence is a break there."""
    low, high = verifier.after_sequence, verifier.last_sequence
    stored_at = {p.sequence: p.policy for p in stored}
    for sequence in sorted(set(stored_at) | set(verifier.policies)):
        if sequence <= low or (sequence > high and not to_head):
            continue
        chained, enforced = verifier.policies.get(sequence), stored_at.get(sequence)
        if enforced is not None and chained != enforced:
            verifier.report_break(
                sequence, "bad_ceremony", f"the database enforces a governance policy "
                f"established at sequence {sequence} that the chain does not record there")
        elif enforced is None and chained is not None:
            verifier.report_break(
                sequence, "bad_ceremony", f"the chain establishes a governance policy at "
                f"sequence {sequence} that the database does not hold")


def compare_stored_keys(verifier: ChainVerifier, stored: Iterable[RegisteredKey], *,
                        to_head: bool = True) -> None:
    """Holds the keys the database holds against those the chain registered (to_head:
    every key; else those added up to the last sequence checked). A witness key written
    straight into the key table counts for no approval (approvals count only the policy's
    witnesses), but it is reported all the same: the table no longer matches the chain."""
    high = verifier.last_sequence
    held = {key.key_id: key for key in stored}
    for key_id in sorted(set(held) | set(verifier.known_keys)):
        row, chained = held.get(key_id), verifier.known_keys.get(key_id)
        if chained is None:
            if row is not None and (to_head or row.added_seq <= high):
                verifier.report_break(row.added_seq, "bad_ceremony",
                                      f"the database holds {row.purpose} key {key_id} (owner "
                                      f"{row.owner_id}) that no chained event registers")
            continue
        if not to_head and chained.added_seq > high:
            continue
        if row is None:
            verifier.report_break(chained.added_seq, "bad_ceremony",
                                  f"the chain registers {chained.purpose} key {key_id} at "
                                  f"sequence {chained.added_seq} that the database does not hold")
        elif (row.purpose, row.owner_id, row.public_key, row.added_seq) != (
                chained.purpose, chained.owner_id, chained.public_key, chained.added_seq):
            verifier.report_break(row.added_seq, "bad_ceremony",
                                  f"the database holds key {key_id} as {row.purpose} of "
                                  f"{row.owner_id}, not as the chain registers it at sequence "
                                  f"{chained.added_seq} ({chained.purpose} of {chained.owner_id})")
        elif to_head and row.revoked_seq != chained.revoked_seq:
            verifier.report_break(row.revoked_seq or chained.revoked_seq or row.added_seq,
                                  "bad_ceremony",
                                  f"the database and the chain disagree on whether key {key_id} "
                                  f"is revoked ({row.revoked_seq} against {chained.revoked_seq})")
