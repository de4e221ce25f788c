"""Ed25519 key files: PKCS#8 PEM private keys, raw 32-byte public keys shown as hex."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from canonlog.domain.errors import CanonlogError
from canonlog.infrastructure.files import write_file


class KeyFileError(CanonlogError):
    """A key file is missing, unreadable or not an Ed25519 key."""


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """Returns the raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key_file(path: Path) -> bytes:
    """Writes a new private key to path (mode 0600, never overwriting); returns the public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        write_file(path, pem, mode=0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from exc
    return public_bytes(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Reads a private key written by generate_key_file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot read an Ed25519 private key from {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def parse_public_key(text: str) -> bytes:
    """Parses a public key given as 64 hex characters."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise KeyFileError(f"public key {text!r} is not hex") from exc
    if len(raw) != 32:
        raise KeyFileError(f"public key {text!r} is {len(raw)} bytes; Ed25519 keys are 32")
    return raw
