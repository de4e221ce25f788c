"""Ed25519 keys for tests: fixed seeds, so signatures (and the events that carry them)
come out the same from one run and one adapter to the next."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def seeded_key(seed: int) -> Ed25519PrivateKey:
    """The private key whose 32 seed bytes are all seed."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key, as EventLog.add_key takes it."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
