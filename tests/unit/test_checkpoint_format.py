"""The checkpoint note format: C2SP signed-note, tlog-checkpoint and tlog-cosignature/v1."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.domain.checkpoint import (
    Checkpoint,
    TrustedKey,
    cosign,
    key_id,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from canonlog.domain.errors import CheckpointFormatError
from canonlog.domain.events import Head
from canonlog.infrastructure.keyfiles import public_bytes

# The reference example of golang.org/x/mod/sumdb/note (note_test.go): a key, a text
# and the signature line Go's implementation writes for them.
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (b"If you think cryptography is the answer to your problem,\n"
           b"then you don't know what your problem is.\n")
GO_SIGNATURE_LINE = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
                     "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

HEAD_HASH = hashlib.sha256(b"head").digest()
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)


@pytest.fixture(scope="module")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="module")
def witness_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


def checkpoint(sequence: int = 1200, ledger: str = "main") -> Checkpoint:
    return Checkpoint.of(Head(ledger, sequence, HEAD_HASH), f"canonlog/{ledger}", WHEN)


def trusted(key: Ed25519PrivateKey, name: str = "canonlog/main") -> TrustedKey:
    return TrustedKey(name, public_bytes(key))


def test_signing_reproduces_the_go_reference_note_byte_for_byte():
    """Ed25519 is deterministic, so the same key and text give the reference signature line."""
    public = base64.b64decode(GO_VERIFIER_KEY.split("+", 2)[2])
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    assert public[0] == seed[0] == 0x01
    private = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert key_id("PeterNeumann", 0x01, public[1:]).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, "PeterNeumann", private).line() == GO_SIGNATURE_LINE


def test_key_ids_follow_the_signed_note_definition(log_key):
    """key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4] for Ed25519 signers."""
    public = public_bytes(log_key)
    expected = hashlib.sha256(b"canonlog/main" + b"\x0a" + b"\x01" + public).digest()[:4]
    assert trusted(log_key).key_id == expected
    signed = sign_checkpoint(checkpoint(), "canonlog/main", log_key)
    assert signed.signatures[0].key_id == expected


def test_a_checkpoint_note_has_the_documented_layout_and_round_trips(log_key):
    signed = sign_checkpoint(checkpoint(), "canonlog/main", log_key)
    note = signed.note()
    body, signature = note.decode().split("\n\n")
    assert body.split("\n") == ["canonlog/main", "1200", base64.b64encode(HEAD_HASH).decode(),
                                "ledger main", "time 2025-01-02T03:04:05Z"]
    raw = base64.b64decode(signature.removeprefix("\u2014 canonlog/main ").removesuffix("\n"))
    assert raw[4:] == log_key.sign(signed.body)
    parsed = parse_checkpoint(note)
    assert parsed == signed
    assert parsed.note() == note
    assert parsed.checkpoint.head == Head("main", 1200, HEAD_HASH)
    assert verify_checkpoint(parsed, [trusted(log_key)]).signed_by == ("canonlog/main",)


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda n: n.replace(b"\n\n", b"\n", 1), "no blank line"),
    (lambda n: n.replace(b"\n1200\n", b"\n01200\n"), "line 2: sequence '01200'"),
    (lambda n: n.replace(b"\n1200\n", b"\n-1\n"), "line 2"),
    (lambda n: n.replace(b"=\nledger", b"\nledger"), "line 3: head hash"),
    (lambda n: n.replace(b"ledger main\n", b"ledger main\nflavour vanilla\n"), "line 6: unknown"),
    (lambda n: n.replace(b"ledger main\n", b"ledger: main\n"), "line 4: expected 'ledger <id>'"),
    (lambda n: n.replace(b"03:04:05Z", b"03:04:05+00:00"), "line 5: expected 'time"),
    (lambda n: n.replace(b"2025-01-02", b"2025-02-30"), "line 5"),
    (lambda n: n.replace(b"canonlog/main\n1200", b"canonlog/main\t\n1200"), "line 1: control"),
    (lambda n: n[:-1], "does not end with a newline"),
    (lambda n: n.replace("\u2014 ".encode(), b"- "), "line 7: a signature line starts"),
    (lambda n: n.replace("\u2014 canonlog/main".encode(), "\u2014 canon+log".encode()), "line 7"),
    (lambda n: n.replace("\u2014 canonlog/main ".encode(), "\u2014 canonlog/main !".encode()),
     "line 7: signature of canonlog/main is not standard base64"),
    (lambda n: b"\xff" + n, "not valid UTF-8"),
    (lambda n: n.split(b"\n\n")[0] + b"\n\n", "no signature lines"),
])
def test_malformed_notes_are_refused_naming_the_line(log_key, mangle, message):
    note = sign_checkpoint(checkpoint(), "canonlog/main", log_key).note()
    with pytest.raises(CheckpointFormatError) as caught:
        parse_checkpoint(mangle(note))
    assert message in str(caught.value)


@pytest.mark.parametrize("edit", [
    lambda n: n.replace(b"\n1200\n", b"\n1201\n"),
    lambda n: n.replace(base64.b64encode(HEAD_HASH), base64.b64encode(bytes(32))),
    lambda n: n.replace(b"ledger main", b"ledger mains"),
])
def test_a_tampered_body_fails_its_signature(log_key, edit):
    note = edit(sign_checkpoint(checkpoint(), "canonlog/main", log_key).note())
    result = verify_checkpoint(parse_checkpoint(note), [trusted(log_key)])
    assert not result.trusted
    assert result.failed == ("canonlog/main",)
    assert result.problem() == "signature by canonlog/main does not verify"


def test_a_tampered_signature_fails(log_key):
    signed = sign_checkpoint(checkpoint(), "canonlog/main", log_key)
    line = signed.signatures[0].line()
    raw = bytearray(base64.b64decode(line.split()[2]))
    raw[-1] ^= 1
    note = signed.note().replace(line.encode(), f"\u2014 canonlog/main {base64.b64encode(raw).decode()}\n"
                                 .encode())
    assert verify_checkpoint(parse_checkpoint(note), [trusted(log_key)]).failed == ("canonlog/main",)


def test_signatures_by_unknown_keys_are_ignored_and_reported(log_key, witness_key):
    """Per signed-note, a signature whose name or key ID matches no trusted key is ignored."""
    signed = sign_checkpoint(checkpoint(), "canonlog/main", witness_key)
    result = verify_checkpoint(signed, [trusted(log_key)])
    unknown_id = key_id("canonlog/main", 0x01, public_bytes(witness_key)).hex()
    assert result.unknown == (f"canonlog/main (key ID {unknown_id})",)
    assert result.failed == () and result.signed_by == ()
    assert result.problem() == (f"not signed by a trusted checkpoint key "
                                f"(signed by canonlog/main (key ID {unknown_id}))")
    both = signed.with_signature(sign_checkpoint(checkpoint(), "canonlog/main", log_key).signatures[0])
    assert verify_checkpoint(both, [trusted(log_key)]).trusted


def test_a_cosignature_is_tlog_cosignature_v1(log_key, witness_key):
    signed = sign_checkpoint(checkpoint(), "canonlog/main", log_key)
    cosignature = cosign(signed, "witness.example/w1", witness_key, 1_700_000_000)
    public = public_bytes(witness_key)
    assert cosignature.key_id == hashlib.sha256(
        b"witness.example/w1\n\x04" + public).digest()[:4]
    assert cosignature.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + signed.body
    witness_key.public_key().verify(cosignature.signature[8:], message)
    assert len(base64.b64decode(cosignature.line().split()[2])) == 4 + 8 + 64

    note = signed.with_signature(cosignature).note()
    parsed = parse_checkpoint(note)
    assert parsed.note() == note
    witness = TrustedKey.witness("witness.example/w1", public)
    result = verify_checkpoint(parsed, [trusted(log_key)], [witness])
    assert result.trusted
    assert result.cosigned_by == (("witness.example/w1", 1_700_000_000),)
    # A witness's cosignature is not a log signature, and the witness key is not a signer.
    alone = verify_checkpoint(parsed, [], [witness])
    assert not alone.trusted and alone.cosigned_by
    assert verify_checkpoint(parsed, [TrustedKey("witness.example/w1", public)]).signed_by == ()


def test_a_cosignature_with_an_altered_timestamp_fails(log_key, witness_key):
    signed = sign_checkpoint(checkpoint(), "canonlog/main", log_key)
    good = cosign(signed, "w1", witness_key, 1_700_000_000)
    bad = type(good)(good.key_name, good.key_id,
                     (1_700_000_001).to_bytes(8, "big") + good.signature[8:])
    result = verify_checkpoint(signed.with_signature(bad), [trusted(log_key)],
                               [TrustedKey.witness("w1", public_bytes(witness_key))])
    assert result.failed == ("witness w1",)
    assert not result.trusted


def test_key_names_and_checkpoint_fields_are_checked():
    for name in ("", "a b", "a+b"):
        with pytest.raises(CheckpointFormatError):
            TrustedKey(name, bytes(32))
    with pytest.raises(CheckpointFormatError):
        TrustedKey("k", bytes(31))
    with pytest.raises(CheckpointFormatError):
        Checkpoint.of(Head("main", 1, HEAD_HASH), "line\nbreak", WHEN)
    with pytest.raises(CheckpointFormatError):
        Checkpoint.of(Head("main", 1, HEAD_HASH), "o", datetime(2025, 1, 1))


def test_the_documented_example_is_reproduced_byte_for_byte():
    """docs/reference/checkpoints.md shows this note; the keys are fixed seeds, Ed25519 is
    deterministic, so any change to the format changes these bytes."""
    log = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    witness = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    head = Head("main", 1200, hashlib.sha256(b"example").digest())
    signed = sign_checkpoint(Checkpoint.of(head, "canonlog/main",
                                           datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
                             "canonlog/main", log)
    note = signed.with_signature(cosign(signed, "witness.example/w1", witness, 1741944420)).note()
    assert note.decode() == (
        "canonlog/main\n"
        "1200\n"
        "UNhY4JhezH9gQYqvDMWrWH9CwlcKiECVqejMrND2VFw=\n"
        "ledger main\n"
        "time 2025-03-14T09:26:53Z\n"
        "\n"
        "\u2014 canonlog/main ED+bXUhPCcN7Mgye5BmUnahonoPFV3R4l2iPsHF07mn1IG0s006r4EwBd7jnwuYQItz"
        "ikA84KHra7EQlya1ggy8kqgY=\n"
        "\u2014 witness.example/w1 IDJKvgAAAABn0/Zk4ZsoJLUHw+CrgFLDWWps/Uit1QhzKkkMfMw8IqP0+x73CLvR"
        "YI2I32cLko6Da2Su6nKUwFtTMFoPFal396a6AA==\n")
    assert public_bytes(log).hex().startswith("03a107bf")
    documented = (Path(__file__).parents[2] / "docs" / "reference" / "checkpoints.md").read_text()
    assert note.decode().rstrip("\n") in documented
