"""The golden vectors of hash spec v1 pin the hashes canonlog computes.

Each vector is checked three ways: against canonlog.domain.hashing, against an
implementation written here from docs/reference/hash-spec.md alone (struct
packing and calendar arithmetic, none of the module's helpers), and, for the
worked examples, against the hex printed in the spec itself. A change to
hashing.py that changes any hash fails here. The signed vectors and the
signable content vectors hold canonlog.domain.signing to the same standard, with
Ed25519 (RFC 8032) taken from the cryptography package directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
import sys
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from canonlog.application.chain_verification import verify_events
from canonlog.domain.canonical import canonical_json
from canonlog.domain.events import GENESIS_HASH, RecordedEvent
from canonlog.domain.hashing import event_hash_input_v1, event_hash_v1, request_digest_v1
from canonlog.domain.signing import signable_content_v1, signature_is_valid

ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "tests" / "vectors" / "hash_v1.json"
SPEC_FILE = ROOT / "docs" / "reference" / "hash-spec.md"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text("utf-8"))
EVENTS: list[dict[str, Any]] = VECTORS["event_hash_v1"]
REQUESTS: list[dict[str, Any]] = VECTORS["request_digest_v1"]
SIGNABLES: list[dict[str, Any]] = VECTORS["signable_v1"]
SIGNED_EVENTS = [v for v in EVENTS if v["signature"] is not None]
OPTIONAL_IDS = ("task_id", "execution_id", "correlation_id", "causation_id", "agent_id")
#: The vectors that form one valid chain of ledger 'main', in order.
MAIN_CHAIN = (
    "genesis-writer-granted", "chained-all-ids-present", "chained-unicode",
    "chained-same-stream-minimal", "chained-key-added", "chained-signed-by-agent",
)


def _by_name(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


@dataclass(frozen=True)
class Fields:
    """The hashed fields of one vector, in the shape hashing.HashedFields reads."""

    ledger_id: str
    sequence: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    payload: bytes
    metadata: bytes
    task_id: str | None
    execution_id: str | None
    correlation_id: str | None
    causation_id: str | None
    agent_id: str | None
    writer_id: str
    epoch: int
    writer_time: datetime | None
    recorded_at: datetime
    signing_key_id: str | None
    signature: bytes | None
    prev_hash: bytes


def fields_of(vector: dict[str, Any]) -> Fields:
    writer_time = vector["writer_time"]
    return Fields(
        ledger_id=vector["ledger_id"],
        sequence=vector["sequence"],
        event_id=uuid.UUID(vector["event_id"]),
        stream_id=vector["stream_id"],
        stream_version=vector["stream_version"],
        event_type=vector["event_type"],
        payload=vector["payload"].encode("utf-8"),
        metadata=vector["metadata"].encode("utf-8"),
        task_id=vector["task_id"],
        execution_id=vector["execution_id"],
        correlation_id=vector["correlation_id"],
        causation_id=vector["causation_id"],
        agent_id=vector["agent_id"],
        writer_id=vector["writer_id"],
        epoch=vector["epoch"],
        writer_time=None if writer_time is None else datetime.fromisoformat(writer_time),
        recorded_at=datetime.fromisoformat(vector["recorded_at"]),
        signing_key_id=vector["signing_key_id"],
        signature=None if vector["signature"] is None else bytes.fromhex(vector["signature"]),
        prev_hash=bytes.fromhex(vector["prev_hash"]),
    )


# --- An independent implementation, from the spec text only ------------------------

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})([+-])(\d{2}):(\d{2})"
)


def spec_days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (integer arithmetic only)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def spec_micros(iso: str) -> int:
    """Microseconds since 1970-01-01T00:00:00Z of an ISO 8601 text with offset."""
    match = _ISO.fullmatch(iso)
    assert match, iso
    year, month, day, hour, minute, second, fraction = (int(g) for g in match.groups()[:7])
    sign, offset_hours, offset_minutes = match[8], int(match[9]), int(match[10])
    offset = (offset_hours * 3600 + offset_minutes * 60) * (1 if sign == "+" else -1)
    seconds = spec_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset) * 1_000_000 + fraction


def spec_u32(n: int) -> bytes:
    return struct.pack(">I", n)


def spec_i64(n: int) -> bytes:
    return struct.pack(">q", n)


def spec_bytes(data: bytes) -> bytes:
    return spec_u32(len(data)) + data


def spec_text(s: str) -> bytes:
    return spec_bytes(s.encode("utf-8"))


def spec_opt(encoded: bytes | None) -> bytes:
    return b"\x00" if encoded is None else b"\x01" + encoded


def spec_event_input(v: dict[str, Any]) -> bytes:
    out = spec_text("canonlog/event/v1")
    out += spec_text(v["ledger_id"]) + spec_i64(v["sequence"])
    out += bytes.fromhex(v["event_id"].replace("-", ""))
    out += spec_text(v["stream_id"]) + spec_i64(v["stream_version"]) + spec_text(v["event_type"])
    out += spec_bytes(v["payload"].encode("utf-8")) + spec_bytes(v["metadata"].encode("utf-8"))
    for name in OPTIONAL_IDS:
        out += spec_opt(None if v[name] is None else spec_text(v[name]))
    out += spec_text(v["writer_id"]) + spec_i64(v["epoch"])
    writer_time = v["writer_time"]
    out += spec_opt(None if writer_time is None else spec_i64(spec_micros(writer_time)))
    out += spec_i64(spec_micros(v["recorded_at"]))
    key_id, signature = v["signing_key_id"], v["signature"]
    out += spec_opt(None if key_id is None else spec_text(key_id))
    out += spec_opt(None if signature is None else spec_bytes(bytes.fromhex(signature)))
    prev_hash = bytes.fromhex(v["prev_hash"])
    assert len(prev_hash) == 32
    return out + prev_hash


def spec_request_input(r: dict[str, Any]) -> bytes:
    out = spec_text("canonlog/request/v1") + spec_text(r["stream_id"])
    for name in ("task_id", "correlation_id", "causation_id", "agent_id"):
        out += spec_opt(None if r[name] is None else spec_text(r[name]))
    out += spec_u32(len(r["events"]))
    for event in r["events"]:
        out += spec_text(event["event_type"])
        out += spec_bytes(event["payload"].encode("utf-8"))
        out += spec_bytes(event["metadata"].encode("utf-8"))
    return out


def spec_signable_input(v: dict[str, Any]) -> bytes:
    out = spec_text("canonlog/signable/v1") + spec_text(v["ledger_id"])
    out += bytes.fromhex(v["event_id"].replace("-", ""))
    out += spec_text(v["stream_id"]) + spec_text(v["event_type"])
    out += spec_bytes(v["payload"].encode("utf-8")) + spec_bytes(v["metadata"].encode("utf-8"))
    for name in ("task_id", "execution_id", "correlation_id", "causation_id"):
        out += spec_opt(None if v[name] is None else spec_text(v[name]))
    return out + spec_text(v["agent_id"]) + spec_text(v["signing_key_id"])


def spec_ed25519_verifies(public_key: str, signature: str, content: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(signature), content
        )
    except InvalidSignature:
        return False
    return True


def spec_signature_problem(v: dict[str, Any], keys: dict[str, dict[str, Any]]) -> bool:
    """The signature rules of section 7: True when a signed event breaks one."""
    key = keys.get(v["signing_key_id"])
    return (
        key is None or key["purpose"] != "agent" or key["owner_id"] != v["agent_id"]
        or (key["revoked_at"] is not None and key["revoked_at"] < v["sequence"])
        or v["agent_id"] is None
        or not spec_ed25519_verifies(key["public_key"], v["signature"], spec_signable_input(v))
    )


def spec_verify(chain: list[dict[str, Any]]) -> tuple[int, str] | None:
    """Walks a chain as section 7 of the spec says, signatures checked; returns
    (sequence, check) of the first failure, or None when the chain is valid."""
    expected, previous = 1, bytes(32)
    versions: dict[str, int] = {}
    keys: dict[str, dict[str, Any]] = {}
    for v in chain:
        if v["sequence"] != expected:
            return expected, "sequence"
        if bytes.fromhex(v["prev_hash"]) != previous:
            return v["sequence"], "prev_hash"
        stored = bytes.fromhex(v["hash"])
        if hashlib.sha256(spec_event_input(v)).digest() != stored:
            return v["sequence"], "hash"
        if v["stream_version"] != versions.get(v["stream_id"], 0) + 1:
            return v["sequence"], "stream_version"
        if v["stream_id"] == "$ledger" and v["event_type"] == "canonlog.key_added":
            keys[json.loads(v["payload"])["key_id"]] = {**json.loads(v["payload"]), "revoked_at": None}
        elif v["stream_id"] == "$ledger" and v["event_type"] == "canonlog.key_revoked":
            keys[json.loads(v["payload"])["key_id"]]["revoked_at"] = v["sequence"]
        elif v["signature"] is not None and spec_signature_problem(v, keys):
            return v["sequence"], "signature"
        previous, versions[v["stream_id"]] = stored, v["stream_version"]
        expected += 1
    return None


# --- The vectors against canonlog.domain.hashing ------------------------------------


@_by_name(EVENTS)
def test_event_hash_input_matches_the_vector(vector: dict[str, Any]) -> None:
    """event_hash_input_v1 yields exactly the vector's hash_input bytes."""
    assert event_hash_input_v1(fields_of(vector)).hex() == vector["hash_input"]


@_by_name(EVENTS)
def test_event_hash_matches_the_vector(vector: dict[str, Any]) -> None:
    """event_hash_v1 yields the vector's hash, which is SHA-256 of its hash_input."""
    assert event_hash_v1(fields_of(vector)).hex() == vector["hash"]
    assert hashlib.sha256(bytes.fromhex(vector["hash_input"])).hexdigest() == vector["hash"]


@_by_name(REQUESTS)
def test_request_digest_matches_the_vector(vector: dict[str, Any]) -> None:
    """request_digest_v1 yields the vector's digest, SHA-256 of its digest_input."""
    events = [(e["event_type"], e["payload"].encode("utf-8"), e["metadata"].encode("utf-8"))
              for e in vector["events"]]
    digest = request_digest_v1(vector["stream_id"], vector["task_id"], vector["correlation_id"],
                               vector["causation_id"], vector["agent_id"], events)
    assert digest.hex() == vector["digest"]
    assert hashlib.sha256(bytes.fromhex(vector["digest_input"])).hexdigest() == vector["digest"]


# --- The vectors against the independent implementation -----------------------------


@_by_name(EVENTS)
def test_independent_implementation_agrees_on_event_vectors(vector: dict[str, Any]) -> None:
    """Framing written from the spec text gives the same input bytes and hash."""
    data = spec_event_input(vector)
    assert data.hex() == vector["hash_input"]
    assert hashlib.sha256(data).hexdigest() == vector["hash"]


@_by_name(REQUESTS)
def test_independent_implementation_agrees_on_request_vectors(vector: dict[str, Any]) -> None:
    """The request digest written from the spec text gives the same bytes and digest."""
    data = spec_request_input(vector)
    assert data.hex() == vector["digest_input"]
    assert hashlib.sha256(data).hexdigest() == vector["digest"]


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("1970-01-01T00:00:00.000000+00:00", 0),
        ("1969-12-31T23:59:59.999999+00:00", -1),
        ("1970-01-01T09:00:00.000001+09:00", 1),
        ("0001-01-01T00:00:00.000000+00:00", -62135596800000000),
        ("9999-12-31T23:59:59.999999+00:00", 253402300799999999),
        ("2000-02-29T12:30:15.500000-03:30", 951840015500000),
    ],
)
def test_independent_time_encoding_agrees_with_known_instants(iso: str, expected: int) -> None:
    """The test's own calendar arithmetic is right, so agreeing with it means something."""
    assert spec_micros(iso) == expected
    since_epoch = datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=UTC)
    assert since_epoch // timedelta(microseconds=1) == expected


# --- The vectors as a chain ---------------------------------------------------------


def _main_chain() -> list[dict[str, Any]]:
    by_name = {v["name"]: v for v in EVENTS}
    return [by_name[name] for name in MAIN_CHAIN]


def test_the_first_vectors_form_a_valid_chain() -> None:
    """Sequences 1..6 of ledger 'main' pass every check of the verifier walk, the
    signature of sequence 6 by the key registered at sequence 5 included."""
    chain = _main_chain()
    assert [v["sequence"] for v in chain] == [1, 2, 3, 4, 5, 6]
    assert [v["name"] for v in EVENTS[: len(MAIN_CHAIN)]] == list(MAIN_CHAIN)
    assert chain[0]["prev_hash"] == VECTORS["genesis_prev_hash"] == GENESIS_HASH.hex()
    assert spec_verify(chain) is None


@pytest.mark.parametrize(
    ("index", "change", "failure"),
    [
        (1, {"payload": '{"currency":"USD","lines":[],"total":1}'}, (2, "hash")),
        (2, {"hash": "00" * 32}, (3, "hash")),
        (1, {"prev_hash": "11" * 32}, (2, "prev_hash")),
        (3, {"sequence": 5}, (4, "sequence")),
        (3, {"stream_version": 3}, (4, "hash")),
    ],
    ids=["payload-altered", "hash-altered", "link-altered", "sequence-gap", "version-altered"],
)
def test_the_walk_names_the_first_broken_event(
    index: int, change: dict[str, Any], failure: tuple[int, str]
) -> None:
    """Any change to a stored row is reported at the first event it breaks."""
    chain = _main_chain()
    chain[index] = {**chain[index], **change}
    assert spec_verify(chain) == failure


def test_a_recomputed_hash_breaks_the_next_link() -> None:
    """Rewriting an event and its hash is caught by the next event's prev_hash."""
    chain = _main_chain()
    forged = {**chain[1], "payload": '{"total":0}'}
    forged["hash"] = hashlib.sha256(spec_event_input(forged)).hexdigest()
    chain[1] = forged
    assert spec_verify(chain) == (3, "prev_hash")


def test_the_walk_checks_stream_versions() -> None:
    """A stream that skips a version fails even when every hash is recomputed."""
    chain = _main_chain()
    previous = bytes(32).hex()
    for position, vector in enumerate(chain):
        vector = {**vector, "prev_hash": previous}
        if position == 3:
            vector["stream_version"] = 3
        vector["hash"] = hashlib.sha256(spec_event_input(vector)).hexdigest()
        chain[position] = vector
        previous = vector["hash"]
    assert spec_verify(chain) == (4, "stream_version")


def _rehashed(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chain with every prev_hash and hash recomputed, as a writer forging it would."""
    previous, out = bytes(32).hex(), []
    for vector in chain:
        vector = {**vector, "prev_hash": previous}
        vector["hash"] = previous = hashlib.sha256(spec_event_input(vector)).hexdigest()
        out.append(vector)
    return out


def _twin(name: str) -> dict[str, Any]:
    return {**next(v for v in EVENTS if v["name"] == name), "prev_hash": "00" * 32}


def _key_revoked() -> dict[str, Any]:
    """A canonlog.key_revoked event of the key registered at sequence 5, as the third
    event of '$ledger' (the walk below renumbers sequences)."""
    payload = canonical_json({"key_id": "agent-7-key-1", "actor": "ops-1", "reason": "leaked"})
    return {**_main_chain()[4], "stream_version": 3, "event_type": "canonlog.key_revoked",
            "payload": payload.decode("utf-8")}


def _with_owner(vector: dict[str, Any], owner_id: str) -> dict[str, Any]:
    payload = {**json.loads(vector["payload"]), "owner_id": owner_id}
    return {**vector, "payload": canonical_json(payload).decode("utf-8")}


def _with_purpose(vector: dict[str, Any], purpose: str) -> dict[str, Any]:
    payload = {**json.loads(vector["payload"]), "purpose": purpose}
    return {**vector, "payload": canonical_json(payload).decode("utf-8")}


def test_the_walk_checks_signatures_even_when_every_hash_is_recomputed() -> None:
    """A consistent chain still fails at a signature its registered key does not make."""
    chain = _main_chain()
    chain[5] = {**chain[5], "payload": '{"amount":"1999.00","currency":"EUR","reason":"cancelled"}'}
    assert spec_verify(_rehashed(chain)) == (6, "signature")


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        (lambda c: [*c[:5], _twin("signed-twin-other-key")], (6, "signature")),
        (lambda c: [*c[:4], _with_owner(c[4], "agent-8"), c[5]], (6, "signature")),
        (lambda c: [*c[:4], _with_purpose(c[4], "witness"), c[5]], (6, "signature")),
        (lambda c: [*c[:5], {**c[5], "agent_id": "agent-8"}], (6, "signature")),
        (lambda c: [*c[:4], c[5], c[4]], (5, "signature")),
        (lambda c: [*c[:5], _key_revoked(), c[5]], (7, "signature")),
        (lambda c: [*c, _key_revoked()], None),
        (lambda c: [*c[:5], _twin("unsigned-twin")], None),
    ],
    ids=["unregistered-key", "key-of-another-agent", "witness-key", "other-agent-id",
         "key-added-after-the-event", "revoked-before", "revoked-after", "unsigned"],
)
def test_the_walk_applies_the_signature_rules(change: Any, failure: tuple[int, str] | None) -> None:
    """A signature counts only by an agent key of the event's agent_id, registered by a
    chained key_added event before the event and not revoked at an earlier sequence;
    canonlog's verifier applies the same rules."""
    chain = _rehashed([{**v, "sequence": i} for i, v in enumerate(change(_main_chain()), 1)])
    assert spec_verify(chain) == failure
    recorded = [RecordedEvent(**asdict(fields_of(v)), hash_version=1, hash=bytes.fromhex(v["hash"]))
                for v in chain]
    report = verify_events(recorded, "main", signatures="check")
    found = [(b.sequence, "signature") for b in report.breaks if b.kind == "bad_signature"]
    assert found == ([] if failure is None else [failure])
    assert report.breaks_total == len(found)


# --- Every hashed field matters, and framing is unambiguous -------------------------


def _genesis() -> Fields:
    return fields_of(EVENTS[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ledger_id", "main2"),
        ("sequence", 2),
        ("event_id", uuid.UUID(int=1)),
        ("stream_id", "$ledger2"),
        ("stream_version", 2),
        ("event_type", "canonlog.writer_granted2"),
        ("payload", b"{}"),
        ("metadata", b'{"a":1}'),
        ("task_id", "t"),
        ("execution_id", "e"),
        ("correlation_id", "c"),
        ("causation_id", "c"),
        ("agent_id", "a"),
        ("writer_id", "writer-b"),
        ("epoch", 2),
        ("writer_time", datetime.fromisoformat("2024-05-01T12:00:00.000001+00:00")),
        ("recorded_at", datetime.fromisoformat("2024-05-01T12:00:00.000002+00:00")),
        ("signing_key_id", "k"),
        ("signature", bytes(64)),
        ("prev_hash", b"\x01" * 32),
    ],
)
def test_every_field_is_covered_by_the_hash(field: str, value: object) -> None:
    """Changing any one hashed field changes the hash."""
    assert event_hash_v1(replace(_genesis(), **{field: value})) != event_hash_v1(_genesis())


def _signed() -> Fields:
    return fields_of(SIGNED_EVENTS[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signing_key_id", "agent-7-key-2"),
        ("signing_key_id", None),
        ("signature", bytes(64)),
        ("signature", bytes.fromhex(SIGNED_EVENTS[0]["signature"])[:63]),
        ("signature", None),
    ],
    ids=["other-key-id", "no-key-id", "other-signature", "truncated-signature", "no-signature"],
)
def test_the_signature_fields_of_a_signed_event_are_covered_by_the_hash(
    field: str, value: object
) -> None:
    """Changing, shortening or dropping the key id or the signature changes the hash."""
    assert event_hash_v1(replace(_signed(), **{field: value})) != event_hash_v1(_signed())


@pytest.mark.parametrize("field", (*OPTIONAL_IDS, "signing_key_id"))
def test_an_absent_id_differs_from_an_empty_one(field: str) -> None:
    """opt() frames absence, so None and "" never share an encoding."""
    assert event_hash_v1(replace(_genesis(), **{field: ""})) != event_hash_v1(_genesis())


def test_an_absent_signature_differs_from_an_empty_one() -> None:
    """opt(bytes()) frames absence, so None (00) and b"" (01 00000000) differ."""
    empty = replace(_genesis(), signature=b"")
    assert event_hash_v1(empty) != event_hash_v1(_genesis())
    assert event_hash_input_v1(empty).endswith(b"\x00\x01\x00\x00\x00\x00" + bytes(32))
    assert event_hash_input_v1(_genesis()).endswith(b"\x00\x00" + bytes(32))


def test_bytes_cannot_move_between_the_key_id_and_the_signature() -> None:
    """The key id's length prefix keeps a byte from passing into the signature."""
    one = replace(_signed(), signing_key_id="k\x01", signature=b"x" * 64)
    other = replace(_signed(), signing_key_id="k", signature=b"\x01" + b"x" * 63)
    assert event_hash_input_v1(one) != event_hash_input_v1(other)


def test_bytes_cannot_move_between_adjacent_fields() -> None:
    """Length prefixes keep ("ab", "c") and ("a", "bc") apart."""
    one = replace(_genesis(), stream_id="ab", event_type="c")
    other = replace(_genesis(), stream_id="a", event_type="bc")
    assert event_hash_input_v1(one) != event_hash_input_v1(other)


def test_the_utc_offset_does_not_change_the_hash() -> None:
    """time() encodes the instant, whatever offset the timestamp is written with."""
    utc = replace(_genesis(), recorded_at=datetime.fromisoformat("2024-05-01T12:00:00+00:00"))
    tokyo = replace(_genesis(), recorded_at=datetime.fromisoformat("2024-05-01T21:00:00+09:00"))
    assert event_hash_v1(utc) == event_hash_v1(tokyo)


# --- Signed vectors and signable content ---------------------------------------------


def _signable_args(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "ledger_id": v["ledger_id"], "event_id": uuid.UUID(v["event_id"]),
        "stream_id": v["stream_id"], "event_type": v["event_type"],
        "payload": v["payload"].encode("utf-8"), "metadata": v["metadata"].encode("utf-8"),
        **{name: v[name] for name in ("task_id", "execution_id", "correlation_id",
                                      "causation_id", "agent_id", "signing_key_id")},
    }


def _public_key_of(seed: str) -> str:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@_by_name(SIGNED_EVENTS)
def test_a_signed_vector_carries_a_valid_signature_over_its_signable_content(
    vector: dict[str, Any],
) -> None:
    """The signable content is the event's, by signing.py and by the spec; the signature
    verifies with signature_is_valid and is what signing with the printed seed gives."""
    signer = vector["signer"]
    content = bytes.fromhex(signer["signable_content"])
    assert signable_content_v1(**_signable_args(vector)) == content
    assert spec_signable_input(vector) == content
    assert _public_key_of(signer["private_key_seed"]) == signer["public_key"]
    signature = bytes.fromhex(vector["signature"])
    assert len(signature) == 64
    assert signature_is_valid(bytes.fromhex(signer["public_key"]), signature, content)
    assert spec_ed25519_verifies(signer["public_key"], vector["signature"], content)
    seed = bytes.fromhex(signer["private_key_seed"])
    assert Ed25519PrivateKey.from_private_bytes(seed).sign(content) == signature


@_by_name(SIGNED_EVENTS)
def test_a_signature_does_not_verify_for_other_content_or_another_key(
    vector: dict[str, Any],
) -> None:
    """signature_is_valid refuses the signature over changed content or under another key."""
    signer = vector["signer"]
    content = bytes.fromhex(signer["signable_content"])
    public_key, signature = bytes.fromhex(signer["public_key"]), bytes.fromhex(vector["signature"])
    altered = signable_content_v1(**{**_signable_args(vector), "agent_id": "agent-8"})
    assert not signature_is_valid(public_key, signature, altered)
    other = next(v for v in SIGNED_EVENTS if v["signer"]["public_key"] != signer["public_key"])
    assert not signature_is_valid(bytes.fromhex(other["signer"]["public_key"]), signature, content)
    assert not signature_is_valid(public_key, signature[:63], content)


def test_the_chain_signature_is_by_the_key_the_chain_registers() -> None:
    """The key_added vector registers the signed vector's key for its agent, with the
    public key of the signer."""
    added, signed = _main_chain()[4:6]
    assert json.loads(added["payload"]) == {
        "actor": "ops-1", "key_id": signed["signing_key_id"], "owner_id": signed["agent_id"],
        "public_key": signed["signer"]["public_key"], "purpose": "agent",
    }


@_by_name(SIGNABLES)
def test_signable_content_matches_the_vector(vector: dict[str, Any]) -> None:
    """signable_content_v1 and the spec's framing give the vector's bytes, and its
    signature verifies."""
    content = bytes.fromhex(vector["signable_content"])
    assert signable_content_v1(**_signable_args(vector)) == content
    assert spec_signable_input(vector) == content
    assert _public_key_of(vector["private_key_seed"]) == vector["public_key"]
    assert signature_is_valid(bytes.fromhex(vector["public_key"]),
                              bytes.fromhex(vector["signature"]), content)
    seed = bytes.fromhex(vector["private_key_seed"])
    assert Ed25519PrivateKey.from_private_bytes(seed).sign(content).hex() == vector["signature"]


def test_the_signable_vectors_include_the_signed_event() -> None:
    """One signable vector is the signed event's content, signature and all."""
    signed = SIGNED_EVENTS[0]
    assert any(v["signable_content"] == signed["signer"]["signable_content"]
               and v["signature"] == signed["signature"] for v in SIGNABLES)


# --- The vectors file itself --------------------------------------------------------


def test_the_vectors_cover_what_the_spec_promises() -> None:
    """The event vectors keep covering the cases the spec lists."""
    assert len(EVENTS) >= 6
    assert len({v["name"] for v in EVENTS}) == len(EVENTS)
    texts = [v[k] or "" for v in EVENTS for k in ("stream_id", "event_type", "payload", "task_id")]
    assert any(any(0x1F300 <= ord(c) <= 0x1FAFF for c in t) for t in texts), "emoji"
    assert any(any(0x4E00 <= ord(c) <= 0x9FFF for c in t) for t in texts), "CJK"
    assert any("\u0301" in t for t in texts), "combining mark"
    assert any(v["metadata"] == "{}" for v in EVENTS)
    assert any(all(v[k] is None for k in OPTIONAL_IDS) for v in EVENTS)
    assert any(all(v[k] is not None for k in OPTIONAL_IDS) for v in EVENTS)
    assert {v["writer_time"] is None for v in EVENTS} == {True, False}
    times = [spec_micros(t) for v in EVENTS for t in (v["writer_time"], v["recorded_at"]) if t]
    far_future = spec_micros("9999-01-01T00:00:00.000000+00:00")
    assert min(times) < 0
    assert max(times) > far_future
    assert all(t % 1_000_000 for t in times if t < 0 or t > far_future), "with microseconds"
    assert max(max(v["sequence"], v["stream_version"], v["epoch"]) for v in EVENTS) == 2**63 - 1
    assert any(v["stream_version"] >= 2**32 for v in EVENTS)
    assert any(v["prev_hash"] == VECTORS["genesis_prev_hash"] for v in EVENTS)
    assert len(REQUESTS) >= 3
    assert all((v["signing_key_id"] is None) == (v["signature"] is None) for v in EVENTS)
    assert all((v["signature"] is None) == (v["signer"] is None) for v in EVENTS)
    assert len({v["signer"]["public_key"] for v in SIGNED_EVENTS}) >= 2
    assert len(SIGNABLES) >= 2
    signature_fields = {"signing_key_id", "signature", "signer", "hash_input", "hash", "name",
                        "description"}

    def rest(v: dict[str, Any]) -> dict[str, Any]:
        return {k: x for k, x in v.items() if k not in signature_fields}

    for signed in SIGNED_EVENTS:
        twins = [v for v in EVENTS if v is not signed and rest(v) == rest(signed)]
        assert any(v["signature"] is None for v in twins), signed["name"]
        assert any(v["signature"] not in (None, signed["signature"]) for v in twins), signed["name"]


def test_payloads_in_the_vectors_are_canonical() -> None:
    """Vector payloads and metadata are canonical JSON, the database's own '$ledger'
    payloads included."""
    assert any(v["stream_id"] == "$ledger" for v in EVENTS)
    for v in EVENTS:
        for key in ("payload", "metadata"):
            data = v[key].encode("utf-8")
            assert canonical_json(data) == data, (v["name"], key)
    for r in REQUESTS:
        for e in r["events"]:
            for key in ("payload", "metadata"):
                data = e[key].encode("utf-8")
                assert canonical_json(data) == data, (r["name"], key)


def test_the_vectors_file_is_what_generate_py_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """hash_v1.json is up to date with tests/vectors/generate.py."""
    spec = importlib.util.spec_from_file_location(
        "canonlog_vectors_generate", ROOT / "tests" / "vectors" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the module's annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.render() == VECTORS_FILE.read_text("utf-8")


# --- The spec document agrees with the vectors --------------------------------------


def _spec_block(kind: str, name: str) -> bytes:
    text = SPEC_FILE.read_text("utf-8")
    match = re.search(rf"<!-- {kind}: {re.escape(name)} -->\n```text\n(.*?)```", text, re.S)
    assert match, f"no {kind} block for {name} in {SPEC_FILE.name}"
    return bytes.fromhex("".join(line.split()[0] for line in match[1].splitlines()))


@pytest.mark.parametrize(
    "name", ["genesis-writer-granted", "chained-all-ids-present", "chained-signed-by-agent"]
)
def test_the_spec_worked_examples_match_the_vectors(name: str) -> None:
    """The hex breakdowns printed in hash-spec.md are the vectors' hash inputs."""
    vector = next(v for v in EVENTS if v["name"] == name)
    assert _spec_block("hash-input", name).hex() == vector["hash_input"]


def test_the_spec_signable_example_matches_the_vector() -> None:
    """The signable content breakdown printed in hash-spec.md is the signed event's."""
    vector = next(v for v in EVENTS if v["name"] == "chained-signed-by-agent")
    content = _spec_block("signable-content", vector["name"])
    assert content.hex() == vector["signer"]["signable_content"]


def test_the_spec_request_example_matches_the_vector() -> None:
    """The request digest breakdown printed in hash-spec.md is the vector's input."""
    vector = next(r for r in REQUESTS if r["name"] == "single-event-context-absent")
    assert _spec_block("digest-input", vector["name"]).hex() == vector["digest_input"]


def test_the_spec_lists_every_vector_hash() -> None:
    """Each vector's expected hash, digest or signature and each test public key is
    printed in hash-spec.md."""
    text = SPEC_FILE.read_text("utf-8")
    for vector in EVENTS:
        assert f"`{vector['hash']}`" in text, vector["name"]
    for vector in REQUESTS:
        assert f"`{vector['digest']}`" in text, vector["name"]
    for vector in [*SIGNED_EVENTS, *SIGNABLES]:
        assert f"`{vector['signature']}`" in text, vector["name"]
    for public_key in {v["public_key"] for v in SIGNABLES}:
        assert f"`{public_key}`" in text
