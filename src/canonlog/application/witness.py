"""A witness: cosigns a ledger's checkpoints only while they extend what it saw before.

A witness is a party other than the ledger's operator. It keeps its own record
(WitnessState) of the newest checkpoint it cosigned per origin and adds a
tlog-cosignature/v1 cosignature (https://c2sp.org/tlog-cosignature) only when a
new checkpoint is consistent with that record: the same sequence must carry the
same hash, and a larger sequence must be reachable by a chain that verifies from
the recorded (sequence, hash) to the new one. A ledger that forked, was cut
back or rewritten after a checkpoint the witness cosigned therefore gets no
further cosignature, whatever its operator's key signs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.chain_verification import verify_events
from canonlog.application.ports import EventReader, WitnessState
from canonlog.application.verification import verify_ledger
from canonlog.application.verifier import ChainReport, VerifiableEvent
from canonlog.domain.checkpoint import (
    NoteSignature,
    SignedCheckpoint,
    TrustedKey,
    check_key_name,
    cosign,
    parse_checkpoint,
    verify_checkpoint,
)
from canonlog.domain.errors import WitnessRefused
from canonlog.domain.events import GENESIS_HASH, Head


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A cosignature the witness made, and the checkpoint it cosigned."""

    checkpoint: SignedCheckpoint
    cosignature: NoteSignature
    #: The sequence the witness had cosigned before (0 for its first of this origin).
    previous_sequence: int


class CheckpointWitness:
    """Cosigns checkpoints signed by a trusted log key that extend the last one it cosigned."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey, state: WitnessState,
                 log_keys: Sequence[TrustedKey], *, clock: Callable[[], float] = time.time) -> None:
        self._name = check_key_name(name)
        self._private_key = private_key
        self._state = state
        self._log_keys = tuple(log_keys)
        self._clock = clock

    async def cosign(self, note: bytes, *, reader: EventReader | None = None,
                     events: Iterable[VerifiableEvent] | None = None) -> Cosigned:
        """Checks the note and returns the witness's cosignature of it, recording it as seen.

        The chain between the last cosigned checkpoint and this one is read from
        reader (a ledger database) or events (an export, in sequence order). Without
        either, only a first checkpoint or one at the same sequence and hash can be
        cosigned. Raises WitnessRefused, recording nothing, when the checkpoint is not
        signed by a trusted log key or does not extend the last one cosigned.
        """
        signed = parse_checkpoint(note)
        checkpoint = signed.checkpoint
        what = f"checkpoint #{checkpoint.sequence} of {checkpoint.origin}"
        problem = verify_checkpoint(signed, self._log_keys).problem()
        if problem is not None:
            raise WitnessRefused(f"{what} is refused: {problem}")
        new = checkpoint.head
        last = self._state.last_cosigned(checkpoint.origin)
        if last is not None and new.sequence < last.sequence:
            raise WitnessRefused(f"{what} is refused: it is older than checkpoint "
                                 f"#{last.sequence}, which this witness already cosigned")
        if last is not None and new.sequence == last.sequence:
            if new.hash != last.hash:
                raise WitnessRefused(
                    f"{what} is refused: it says hash {new.hash.hex()} but this witness "
                    f"cosigned hash {last.hash.hex()} at that sequence: the ledger forked")
        elif reader is not None or events is not None:
            start = last or Head(checkpoint.ledger_id, 0, GENESIS_HASH)
            report = await _verify_between(start, new, reader, events)
            _require_extension(what, start, new, report)
        elif last is not None:
            raise WitnessRefused(f"{what} is refused: no events were given to check that it "
                                 f"extends checkpoint #{last.sequence}, cosigned before")
        cosignature = cosign(signed, self._name, self._private_key, int(self._clock()))
        self._state.record(checkpoint.origin, new)
        return Cosigned(signed.with_signature(cosignature), cosignature,
                        last.sequence if last else 0)


async def _verify_between(start: Head, end: Head, reader: EventReader | None,
                          events: Iterable[VerifiableEvent] | None) -> ChainReport:
    # Agent signatures are not the witness's business: it vouches for append-only
    # growth of the chain, nothing about the events' content.
    if reader is not None:
        verification = await verify_ledger(reader, end.ledger_id, anchor=start,
                                           until=end.sequence, signatures="ignore")
        return verification.chain
    assert events is not None
    return verify_events(events, end.ledger_id, after=start, until=end.sequence,
                         signatures="ignore")


def _require_extension(what: str, start: Head, end: Head, report: ChainReport) -> None:
    since = f"checkpoint #{start.sequence} ({start.hash.hex()})" if start.sequence else "genesis"
    broken = report.first_break
    if broken is not None:
        raise WitnessRefused(
            f"{what} is refused: the chain from {since} does not verify: sequence "
            f"{broken.sequence}: {broken.message}")
    if report.last_sequence != end.sequence or report.head_hash != end.hash:
        raise WitnessRefused(
            f"{what} is refused: the chain from {since} reaches #{report.last_sequence} "
            f"{report.head_hash.hex()}, not #{end.sequence} {end.hash.hex()}: it does not "
            f"extend what this witness cosigned")
