"""Signed checkpoints: a ledger's sequence and head hash as a C2SP signed note.

A checkpoint vouches, outside the database, for the head of a ledger's hash
chain. Its text form follows the transparency-log formats so that tools outside
canonlog can read, verify and cosign it:

- the body follows https://c2sp.org/tlog-checkpoint: the origin line, the
  sequence in decimal (the "tree size"), the head hash in standard base64 (the
  "root hash"; here the chain's head, not a Merkle root), then the extension
  lines ``ledger <ledger id>`` and ``time <RFC 3339 UTC>``;
- signatures follow https://c2sp.org/signed-note: after a blank line, one line
  ``— <key name> base64(key ID || signature)`` per signature, where the ledger's
  checkpoint key signs the body with Ed25519 (signature type 0x01) and the key
  ID is ``SHA-256(key name || 0x0A || type || public key)[:4]``;
- witnesses add cosignatures per https://c2sp.org/tlog-cosignature (version 1,
  signature type 0x04): an Ed25519 signature of ``"cosignature/v1\\n" ||
  "time <unix seconds>\\n" || body``, written as ``key ID || u64 timestamp ||
  signature``.

Example::

    canonlog/main
    1200
    yyD0Pr0vL4m6YOyZ2VfcI2LhZ3N7sF2J0lq9q4PdFmE=
    ledger main
    time 2025-01-01T12:00:00Z

    — canonlog/main mN3qZ...

Parsing is strict (exactly these lines, canonical numbers and base64) and
names the offending line; verification follows signed-note semantics:
signatures by unknown keys are ignored (and listed), a signature by a known key
that fails to verify makes the whole note untrusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.domain.errors import CheckpointFormatError
from canonlog.domain.events import Head
from canonlog.domain.signing import signature_is_valid

#: signed-note signature type of plain Ed25519 note signatures.
SIGNATURE_ED25519: Final = 0x01
#: signed-note signature type of tlog-cosignature/v1 (timestamped Ed25519) cosignatures.
SIGNATURE_COSIGNATURE_V1: Final = 0x04
EM_DASH: Final = "\u2014"
#: Notes with more signature lines are refused (signed-note asks for at least 16).
MAX_SIGNATURES: Final = 100
_MAX_SEQUENCE: Final = 2**63 - 1
_SEQUENCE = re.compile(r"0|[1-9][0-9]*")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_COSIGNATURE_HEADER: Final = b"cosignature/v1\n"


def check_key_name(name: str) -> str:
    """Returns name when signed-note allows it as a key name (non-empty, no spaces, no '+')."""
    if not name or any(c.isspace() or c == "+" or not c.isprintable() for c in name):
        raise CheckpointFormatError(
            f"key name {name!r} must be non-empty, without spaces, '+' or control characters")
    return name


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """The 4-byte signed-note key ID: SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type])
                          + public_key).digest()[:4]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Decodes standard, padded base64, refusing any other spelling of the same bytes."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A ledger's head at a moment: what a checkpoint note's body says."""

    origin: str
    ledger_id: str
    sequence: int
    head_hash: bytes
    time: datetime

    @classmethod
    def of(cls, head: Head, origin: str, time: datetime) -> Checkpoint:
        """A checkpoint of head; time is kept in UTC to the second, as the body writes it."""
        if time.tzinfo is None:
            raise CheckpointFormatError("a checkpoint's time must be timezone-aware")
        checkpoint = cls(origin, head.ledger_id, head.sequence, head.hash,
                         time.astimezone(UTC).replace(microsecond=0))
        checkpoint.body()
        return checkpoint

    @property
    def head(self) -> Head:
        return Head(self.ledger_id, self.sequence, self.head_hash)

    def body(self) -> bytes:
        """The note text: every line newline-terminated, the last one included."""
        if not self.origin or not _line_ok(self.origin):
            raise CheckpointFormatError(f"origin {self.origin!r} is not a single printable line")
        if not self.ledger_id or not _line_ok(self.ledger_id):
            raise CheckpointFormatError(f"ledger id {self.ledger_id!r} is not a single printable line")
        if not 0 <= self.sequence <= _MAX_SEQUENCE:
            raise CheckpointFormatError(f"sequence {self.sequence} is out of range")
        if len(self.head_hash) != 32:
            raise CheckpointFormatError(f"head hash is {len(self.head_hash)} bytes, not 32")
        lines = (self.origin, str(self.sequence), _b64(self.head_hash),
                 f"ledger {self.ledger_id}", f"time {format_time(self.time)}")
        return "".join(line + "\n" for line in lines).encode("utf-8")


def _line_ok(text: str) -> bool:
    return text.isprintable()


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the key ID and the signature bytes after it."""

    key_name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.key_name} {_b64(self.key_id + self.signature)}\n"

    @property
    def timestamp(self) -> int:
        """The timestamp of a tlog-cosignature/v1 cosignature (the 8 bytes after the key ID)."""
        return int.from_bytes(self.signature[:8], "big")


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its signature lines, as published."""

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    @property
    def body(self) -> bytes:
        return self.checkpoint.body()

    def note(self) -> bytes:
        """The signed note: body, blank line, one line per signature."""
        return self.body + b"\n" + "".join(s.line() for s in self.signatures).encode("utf-8")

    def with_signature(self, signature: NoteSignature) -> SignedCheckpoint:
        """The same checkpoint with one more signature line (none added when already present)."""
        if signature in self.signatures:
            return self
        return SignedCheckpoint(self.checkpoint, (*self.signatures, signature))


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key a verifier trusts: a log's checkpoint key (type 0x01) or a witness's (0x04)."""

    name: str
    public_key: bytes
    signature_type: int = SIGNATURE_ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise CheckpointFormatError(
                f"public key of {self.name} is {len(self.public_key)} bytes; Ed25519 keys are 32")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    @classmethod
    def witness(cls, name: str, public_key: bytes) -> TrustedKey:
        return cls(name, public_key, SIGNATURE_COSIGNATURE_V1)


def _public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)


def sign_note(text: bytes, key_name: str, private_key: Ed25519PrivateKey) -> NoteSignature:
    """Signs a note text with Ed25519 as signed-note specifies (signature type 0x01)."""
    check_key_name(key_name)
    return NoteSignature(key_name, key_id(key_name, SIGNATURE_ED25519, _public(private_key)),
                         private_key.sign(text))


def sign_checkpoint(checkpoint: Checkpoint, key_name: str,
                    private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    """Signs a checkpoint with the ledger's checkpoint key."""
    return SignedCheckpoint(checkpoint, (sign_note(checkpoint.body(), key_name, private_key),))


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 cosigner signs for a note body at a POSIX time."""
    return _COSIGNATURE_HEADER + f"time {timestamp}\n".encode("ascii") + body


def cosign(signed: SignedCheckpoint, witness_name: str, private_key: Ed25519PrivateKey,
           timestamp: int) -> NoteSignature:
    """A witness's tlog-cosignature/v1 cosignature of a checkpoint at a POSIX time."""
    check_key_name(witness_name)
    if not 0 <= timestamp <= _MAX_SEQUENCE:
        raise CheckpointFormatError(f"cosignature timestamp {timestamp} is out of range")
    signature = private_key.sign(cosignature_message(signed.body, timestamp))
    return NoteSignature(witness_name,
                         key_id(witness_name, SIGNATURE_COSIGNATURE_V1, _public(private_key)),
                         timestamp.to_bytes(8, "big") + signature)


# -- parsing ---------------------------------------------------------------------------


def parse_signature_line(line: str, number: int) -> NoteSignature:
    """Parses one ``— <name> <base64>`` line (without its newline); number names it in errors."""
    prefix = EM_DASH + " "
    if not line.startswith(prefix):
        raise CheckpointFormatError(f"line {number}: a signature line starts with '{prefix}'")
    name, space, encoded = line[len(prefix):].partition(" ")
    if not space:
        raise CheckpointFormatError(f"line {number}: a signature line is '{prefix}<key name> <base64>'")
    try:
        check_key_name(name)
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f"line {number}: {exc}") from exc
    try:
        raw = _unb64(encoded)
    except ValueError as exc:
        raise CheckpointFormatError(f"line {number}: signature of {name} is {exc}") from exc
    if len(raw) < 5:
        raise CheckpointFormatError(f"line {number}: signature of {name} is too short")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_checkpoint(note: bytes) -> SignedCheckpoint:
    """Parses a signed checkpoint note; raises CheckpointFormatError naming the line at fault."""
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointFormatError(f"note is not valid UTF-8 (byte {exc.start})") from exc
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        bad = next((c for c in line if ord(c) < 0x20 or c == "\x7f"), None)
        if bad is not None:
            raise CheckpointFormatError(f"line {number}: control character U+{ord(bad):04X}")
    if not text.endswith("\n"):
        raise CheckpointFormatError("note does not end with a newline")
    lines.pop()
    try:
        blank = len(lines) - 1 - lines[::-1].index("")
    except ValueError:
        raise CheckpointFormatError(
            "note has no blank line between the checkpoint and its signatures") from None
    body_lines, signature_lines = lines[:blank], lines[blank + 1:]
    if not signature_lines:
        raise CheckpointFormatError("note has no signature lines")
    if len(signature_lines) > MAX_SIGNATURES:
        raise CheckpointFormatError(f"note has {len(signature_lines)} signatures; "
                                    f"at most {MAX_SIGNATURES} are accepted")
    signatures = tuple(parse_signature_line(line, blank + 2 + i)
                       for i, line in enumerate(signature_lines))
    checkpoint = _parse_body(body_lines)
    if checkpoint.body() != "".join(line + "\n" for line in body_lines).encode("utf-8"):
        raise CheckpointFormatError("checkpoint body is not in canonical form")
    return SignedCheckpoint(checkpoint, signatures)


def _parse_body(lines: list[str]) -> Checkpoint:
    names = ("origin", "sequence", "head hash", "'ledger <id>'", "'time <RFC 3339 UTC>'")
    for number, line in enumerate(lines, 1):
        if not line:
            raise CheckpointFormatError(f"line {number}: empty line in the checkpoint body")
    if len(lines) < len(names):
        raise CheckpointFormatError(
            f"line {len(lines) + 1}: checkpoint body ends before its {names[len(lines)]} line")
    if len(lines) > len(names):
        raise CheckpointFormatError(f"line {len(names) + 1}: unknown extension line {lines[5]!r}")
    origin, sequence_text, hash_text, ledger_line, time_line = lines
    if not _SEQUENCE.fullmatch(sequence_text) or int(sequence_text) > _MAX_SEQUENCE:
        raise CheckpointFormatError(
            f"line 2: sequence {sequence_text!r} is not a decimal number without leading zeros")
    try:
        head_hash = _unb64(hash_text)
    except ValueError as exc:
        raise CheckpointFormatError(f"line 3: head hash {hash_text!r} is {exc}") from exc
    if len(head_hash) != 32:
        raise CheckpointFormatError(f"line 3: head hash is {len(head_hash)} bytes, not 32")
    ledger_id = ledger_line.removeprefix("ledger ")
    if ledger_id == ledger_line or not ledger_id:
        raise CheckpointFormatError(f"line 4: expected 'ledger <id>', found {ledger_line!r}")
    moment = time_line.removeprefix("time ")
    if moment == time_line or not _TIME.fullmatch(moment):
        raise CheckpointFormatError(
            f"line 5: expected 'time YYYY-MM-DDTHH:MM:SSZ', found {time_line!r}")
    try:
        time = datetime.strptime(moment, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise CheckpointFormatError(f"line 5: {moment!r} is not a valid time: {exc}") from exc
    return Checkpoint(origin, ledger_id, int(sequence_text), head_hash, time)


# -- verification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointVerification:
    """Which signatures of a note verified against the trusted keys, and which did not.

    ``signed_by`` names the trusted checkpoint keys whose signature verified,
    ``cosigned_by`` the trusted witnesses with their cosignature timestamps,
    ``unknown`` the signature lines from keys nobody trusts (ignored), and
    ``failed`` the trusted keys whose signature did not verify.
    """

    signed_by: tuple[str, ...] = ()
    cosigned_by: tuple[tuple[str, int], ...] = ()
    unknown: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        """True when a trusted checkpoint key signed the note and no trusted signature failed."""
        return bool(self.signed_by) and not self.failed

    def problem(self) -> str | None:
        """Why the note is not trusted, or None when it is."""
        if self.failed:
            return "signature by " + ", ".join(self.failed) + " does not verify"
        if not self.signed_by:
            signers = ", ".join(self.unknown) or "nobody"
            return f"not signed by a trusted checkpoint key (signed by {signers})"
        return None


def verify_checkpoint(signed: SignedCheckpoint, signers: Iterable[TrustedKey],
                      witnesses: Iterable[TrustedKey] = ()) -> CheckpointVerification:
    """Checks every signature line whose key name and key ID match a trusted key."""
    keys = {(k.name, k.key_id): k for k in (*signers, *witnesses)}
    body = signed.body
    signed_by: list[str] = []
    cosigned_by: list[tuple[str, int]] = []
    unknown: list[str] = []
    failed: list[str] = []
    for signature in signed.signatures:
        key = keys.get((signature.key_name, signature.key_id))
        if key is None:
            unknown.append(f"{signature.key_name} (key ID {signature.key_id.hex()})")
        elif key.signature_type == SIGNATURE_COSIGNATURE_V1:
            if _cosignature_valid(key, signature, body):
                cosigned_by.append((key.name, signature.timestamp))
            else:
                failed.append(f"witness {key.name}")
        elif signature_is_valid(key.public_key, signature.signature, body):
            signed_by.append(key.name)
        else:
            failed.append(key.name)
    return CheckpointVerification(tuple(signed_by), tuple(cosigned_by), tuple(unknown),
                                  tuple(failed))


def _cosignature_valid(key: TrustedKey, signature: NoteSignature, body: bytes) -> bool:
    stamp, raw = signature.signature[:8], signature.signature[8:]
    timestamp = int.from_bytes(stamp, "big")
    return (len(stamp) == 8 and timestamp <= _MAX_SEQUENCE
            and signature_is_valid(key.public_key, raw, cosignature_message(body, timestamp)))


def verify_cosignature(signed: SignedCheckpoint, line: bytes,
                       witnesses: Iterable[TrustedKey]) -> tuple[str, int]:
    """Judges one witness's cosignature, kept apart from the note, on its own.

    Returns the trusted witness's name and the cosignature's timestamp; raises
    CheckpointFormatError saying why it does not count (not one signature line, a
    key no one trusts as a witness, a signature that does not verify). Whatever it
    holds, it says nothing about the note's own signatures.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointFormatError("cosignature is not valid UTF-8") from None
    if not text.endswith("\n") or text.count("\n") != 1:
        raise CheckpointFormatError("cosignature is not exactly one newline-terminated line")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text[:-1]):
        raise CheckpointFormatError("cosignature holds a control character")
    signature = parse_signature_line(text[:-1], 1)
    key = next((k for k in witnesses if (k.name, k.key_id) == (signature.key_name,
                                                                signature.key_id)), None)
    if key is None or key.signature_type != SIGNATURE_COSIGNATURE_V1:
        raise CheckpointFormatError(f"cosignature by {signature.key_name} (key ID "
                                    f"{signature.key_id.hex()}), not a trusted witness")
    if not _cosignature_valid(key, signature, signed.body):
        raise CheckpointFormatError(f"cosignature by witness {key.name} does not verify")
    return key.name, signature.timestamp


def cosigned_note(note: bytes, cosignatures: Iterable[bytes],
                  witnesses: Iterable[TrustedKey]) -> bytes:
    """The note with each cosignature (kept apart from it) that verifies under a trusted
    witness appended as a signature line: what a client can check on its own. A note
    that does not parse is returned as it is."""
    try:
        signed = parse_checkpoint(note)
    except CheckpointFormatError:
        return note
    keys = tuple(witnesses)
    lines = b""
    for line in cosignatures:
        try:
            verify_cosignature(signed, line, keys)
        except CheckpointFormatError:
            continue
        if line not in note and line not in lines:
            lines += line
    return note + lines
