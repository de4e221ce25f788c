"""Agent signatures over events: what is signed, and checking it.

An agent signs the *signable content* of an event before submitting it, with an
Ed25519 key registered to it in the ledger. Version 1, framed as in hashing.py:

``text("canonlog/signable/v1") || text(ledger_id) || uuid(event_id) ||
text(stream_id) || text(event_type) || bytes(payload) || bytes(metadata) ||
opt(text(task_id)) || opt(text(execution_id)) || opt(text(correlation_id)) ||
opt(text(causation_id)) || text(agent_id) || text(signing_key_id)``

It covers what the agent decides, not what the ledger assigns (sequence,
version, times, hashes); the event's own hash then covers the signature.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from canonlog.domain.errors import InvalidEvent
from canonlog.domain.events import NewEvent, WriteContext
from canonlog.domain.hashing import frame_bytes, frame_opt_text, frame_text


def signable_content_v1(
    *,
    ledger_id: str,
    event_id: uuid.UUID,
    stream_id: str,
    event_type: str,
    payload: bytes,
    metadata: bytes,
    task_id: str | None,
    execution_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    agent_id: str,
    signing_key_id: str,
) -> bytes:
    """Returns the bytes an agent signs for one event (signable content version 1)."""
    return b"".join((
        frame_text("canonlog/signable/v1"),
        frame_text(ledger_id),
        event_id.bytes,
        frame_text(stream_id),
        frame_text(event_type),
        frame_bytes(payload),
        frame_bytes(metadata),
        frame_opt_text(task_id),
        frame_opt_text(execution_id),
        frame_opt_text(correlation_id),
        frame_opt_text(causation_id),
        frame_text(agent_id),
        frame_text(signing_key_id),
    ))


def sign_event(
    event: NewEvent,
    *,
    private_key: Ed25519PrivateKey,
    signing_key_id: str,
    ledger_id: str,
    stream_id: str,
    context: WriteContext,
) -> NewEvent:
    """Returns the event with an event id (one is drawn if missing) and the agent's signature."""
    if context.agent_id is None:
        raise InvalidEvent("a signed event needs the agent_id of the signing agent")
    event_id = event.event_id or uuid.uuid4()
    content = signable_content_v1(
        ledger_id=ledger_id, event_id=event_id, stream_id=stream_id,
        event_type=event.event_type, payload=event.payload, metadata=event.metadata,
        task_id=context.task_id, execution_id=context.execution_id,
        correlation_id=context.correlation_id, causation_id=context.causation_id,
        agent_id=context.agent_id, signing_key_id=signing_key_id,
    )
    return replace(event, event_id=event_id, signing_key_id=signing_key_id,
                   signature=private_key.sign(content))


def signature_is_valid(public_key: bytes, signature: bytes, content: bytes) -> bool:
    """True when signature is public_key's Ed25519 signature of content."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, content)
    except (InvalidSignature, ValueError):
        return False
    return True
