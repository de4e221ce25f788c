"""Writes tests/vectors/hash_v1.json, the golden vectors of hash spec v1.

Run from the project root with ``python tests/vectors/generate.py``; ``--check``
compares instead of writing and exits 1 when the file differs. The expected
hashes come from canonlog.domain.hashing, the reference implementation, so the
file changes only when someone changes the vectors here or the spec itself; the
unit tests hold both against an independent implementation. Signed vectors carry
real Ed25519 signatures over canonlog.domain.signing.signable_content_v1, made
with fixed test keys whose seeds the file prints (Ed25519 signing is
deterministic, so the signatures are reproducible too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from canonlog.domain.canonical import canonical_json
from canonlog.domain.hashing import event_hash_input_v1, event_hash_v1, request_digest_v1
from canonlog.domain.signing import signable_content_v1, signature_is_valid

OUTPUT = Path(__file__).with_name("hash_v1.json")
GENESIS = "00" * 32
INT64_MAX = 2**63 - 1
#: Private key seeds of the test signing keys. Never use these for anything else.
AGENT_KEY_SEED = bytes(range(32))
OTHER_KEY_SEED = bytes(range(32, 64))


def _public_key(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


@dataclass(frozen=True)
class VectorEvent:
    """The fields hash v1 covers, as canonlog.domain.hashing.HashedFields reads them."""

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


# Each entry: name, description, fields. "prev_hash": "chain" takes the hash of
# the entry before it, so the first six vectors form one valid ledger;
# {"hash_of": name} takes the hash of the named vector. "signed_with" is the seed
# of the private key that signs the event's signable content v1 (None: unsigned).
_ABSENT_IDS: dict[str, Any] = {
    "task_id": None, "execution_id": None, "correlation_id": None,
    "causation_id": None, "agent_id": None,
}
_UNSIGNED: dict[str, Any] = {"signing_key_id": None, "signed_with": None}

_SIGNED_BY_AGENT: dict[str, Any] = {
    "ledger_id": "main", "sequence": 6,
    "event_id": "3b241101-e2bb-4255-8caf-4136c566a962",
    "stream_id": "orders-42", "stream_version": 3, "event_type": "RefundApproved",
    "payload": {"amount": "19.99", "currency": "EUR", "reason": "cancelled"},
    "metadata": {"source": "agent"},
    "task_id": "task-8", "execution_id": None, "correlation_id": "corr-7",
    "causation_id": "cause-8", "agent_id": "agent-7",
    "writer_id": "writer-a", "epoch": 1,
    "writer_time": "2024-05-01T12:00:01.000000+00:00",
    "recorded_at": "2024-05-01T12:00:00.000005+00:00",
    "signing_key_id": "agent-7-key-1", "signed_with": AGENT_KEY_SEED,
    "prev_hash": "chain",
}

EVENT_VECTORS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "genesis-writer-granted",
        "Sequence 1 of ledger 'main': the grant event that opens every ledger. The "
        "database writes the payload itself, in canonical JSON v1 "
        "(canonlog.canonical_json_v1). Metadata {}, every optional id absent, no "
        "writer_time, genesis prev_hash.",
        {
            "ledger_id": "main", "sequence": 1,
            "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "stream_id": "$ledger", "stream_version": 1,
            "event_type": "canonlog.writer_granted",
            "payload": {"writer_id": "writer-a", "epoch": 1, "kind": "genesis",
                        "previous_writer_id": None, "previous_epoch": 0},
            "metadata": {}, **_ABSENT_IDS,
            "writer_id": "writer-a", "epoch": 1, "writer_time": None,
            "recorded_at": "2024-05-01T12:00:00.000001+00:00", **_UNSIGNED, "prev_hash": GENESIS,
        },
    ),
    (
        "chained-all-ids-present",
        "Sequence 2 of ledger 'main', chained to the genesis vector: every optional id "
        "present, writer_time present, non-empty metadata, a float in the payload.",
        {
            "ledger_id": "main", "sequence": 2,
            "event_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
            "stream_id": "orders-42", "stream_version": 1, "event_type": "OrderPlaced",
            "payload": {"currency": "EUR", "lines": [{"qty": 2, "sku": "A-1"}],
                        "total": 19.99},
            "metadata": {"source": "api", "trace": "4bf92f3577b34da6"},
            "task_id": "task-7", "execution_id": "exec-7", "correlation_id": "corr-7",
            "causation_id": "cause-7", "agent_id": "agent-7",
            "writer_id": "writer-a", "epoch": 1,
            "writer_time": "2024-05-01T12:00:00.500000+00:00",
            "recorded_at": "2024-05-01T12:00:00.000002+00:00", **_UNSIGNED, "prev_hash": "chain",
        },
    ),
    (
        "chained-unicode",
        "Sequence 3 of ledger 'main': non-ASCII everywhere (emoji with a skin-tone "
        "modifier, CJK, a decomposed e + U+0301 next to the precomposed U+00E9, keys "
        "U+FFFF and U+1F600, which code point order and UTF-16 order sort differently); "
        "no Unicode normalisation happens anywhere. writer_time carries a +09:00 offset.",
        {
            "ledger_id": "main", "sequence": 3,
            "event_id": "c232ab00-9414-11ec-b3c8-9f6bdeced846",
            "stream_id": "注文-🧾", "stream_version": 1, "event_type": "注文確定",
            "payload": {"emoji": "🙂👍🏽", "cjk": "漢字かな", "combining": "e\u0301 é",
                        "\uffff": "bmp-last", "\U0001f600": "astral", "a": "ascii"},
            "metadata": {"ユーザー": "山田"},
            "task_id": "tâche-e\u0301", "execution_id": None, "correlation_id": None,
            "causation_id": None, "agent_id": "エージェント",
            "writer_id": "writer-a", "epoch": 1,
            "writer_time": "2024-05-01T21:00:00.250000+09:00",
            "recorded_at": "2024-05-01T12:00:00.000003+00:00", **_UNSIGNED, "prev_hash": "chain",
        },
    ),
    (
        "chained-same-stream-minimal",
        "Sequence 4 of ledger 'main': the second event of stream 'orders-42' (version 2), "
        "empty payload and metadata, every optional id absent, no writer_time.",
        {
            "ledger_id": "main", "sequence": 4,
            "event_id": "00000000-0000-0000-0000-000000000000",
            "stream_id": "orders-42", "stream_version": 2, "event_type": "OrderCancelled",
            "payload": {}, "metadata": {}, **_ABSENT_IDS,
            "writer_id": "writer-a", "epoch": 1, "writer_time": None,
            "recorded_at": "2024-05-01T12:00:00.000003+00:00", **_UNSIGNED, "prev_hash": "chain",
        },
    ),
    (
        "chained-key-added",
        "Sequence 5 of ledger 'main': the canonlog.key_added event (stream '$ledger', "
        "version 2) that canonlog.add_key_v1 writes to register the Ed25519 public key "
        "'agent-7-key-1' of agent 'agent-7'; the public key is that of the seed "
        "000102...1f. The database writes the payload in canonical JSON v1.",
        {
            "ledger_id": "main", "sequence": 5,
            "event_id": "9c5b94b1-35ad-49bb-b118-8e8fc24abf80",
            "stream_id": "$ledger", "stream_version": 2, "event_type": "canonlog.key_added",
            "payload": {"key_id": "agent-7-key-1", "purpose": "agent", "owner_id": "agent-7",
                        "public_key": _public_key(AGENT_KEY_SEED).hex(), "actor": "ops-1"},
            "metadata": {}, **_ABSENT_IDS,
            "writer_id": "writer-a", "epoch": 1, "writer_time": None,
            "recorded_at": "2024-05-01T12:00:00.000004+00:00", **_UNSIGNED, "prev_hash": "chain",
        },
    ),
    (
        "chained-signed-by-agent",
        "Sequence 6 of ledger 'main': an event of stream 'orders-42' (version 3) signed "
        "by agent 'agent-7' with the key 'agent-7-key-1' registered at sequence 5. The "
        "signature is Ed25519 (RFC 8032) over the signable content v1; 'signer' gives the "
        "key's seed, its public key and the signed bytes.",
        _SIGNED_BY_AGENT,
    ),
    (
        "signed-twin-other-key",
        "The event of 'chained-signed-by-agent' with only signing_key_id and signature "
        "changed: signed with the key 'agent-7-key-2' (seed 202122...3f), which no vector "
        "registers. Standalone, with the same prev_hash: a different hash.",
        {**_SIGNED_BY_AGENT, "signing_key_id": "agent-7-key-2", "signed_with": OTHER_KEY_SEED,
         "prev_hash": {"hash_of": "chained-key-added"}},
    ),
    (
        "unsigned-twin",
        "The event of 'chained-signed-by-agent' without signing_key_id and signature: the "
        "two absent markers 00 00 in place of the signature fields. Standalone, with the "
        "same prev_hash: a different hash.",
        {**_SIGNED_BY_AGENT, **_UNSIGNED, "prev_hash": {"hash_of": "chained-key-added"}},
    ),
    (
        "negative-timestamps",
        "Timestamps before 1970: recorded_at is one microsecond before the epoch (-1, "
        "all bits set), writer_time is in 1900 with a -05:00 offset. Standalone: "
        "prev_hash is arbitrary.",
        {
            "ledger_id": "archive", "sequence": 5,
            "event_id": "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "stream_id": "s", "stream_version": 3, "event_type": "t",
            "payload": {"n": -1}, "metadata": {}, **_ABSENT_IDS, "agent_id": "a",
            "writer_id": "w", "epoch": 0,
            "writer_time": "1900-01-01T00:00:00.000001-05:00",
            "recorded_at": "1969-12-31T23:59:59.999999+00:00",
            **_UNSIGNED, "prev_hash": bytes(range(32)).hex(),
        },
    ),
    (
        "extreme-timestamps",
        "recorded_at is in the last second of year 9999, writer_time one microsecond "
        "into year 1; both outside the range of 64-bit nanoseconds. (Not the very first "
        "and last microseconds: asyncpg sends datetime.min and datetime.max as -infinity "
        "and infinity, which have no time encoding.)",
        {
            "ledger_id": "archive", "sequence": 6,
            "event_id": "123e4567-e89b-12d3-a456-426614174000",
            "stream_id": "s", "stream_version": 4, "event_type": "t",
            "payload": {"n": 0}, "metadata": {}, **_ABSENT_IDS, "task_id": "t",
            "writer_id": "w", "epoch": 0,
            "writer_time": "0001-01-01T00:00:00.000001+00:00",
            "recorded_at": "9999-12-31T23:59:59.999998+00:00",
            **_UNSIGNED, "prev_hash": "ff" * 32,
        },
    ),
    (
        "large-integers",
        "sequence and epoch at the signed 64-bit maximum, stream_version 2**32 (wrong "
        "if truncated to 32 bits).",
        {
            "ledger_id": "big", "sequence": INT64_MAX,
            "event_id": "01890a5d-ac96-774b-bcce-b302099a8057",
            "stream_id": "counter", "stream_version": 2**32, "event_type": "Incremented",
            "payload": {"by": INT64_MAX, "min": -(2**63)}, "metadata": {},
            **_ABSENT_IDS, "correlation_id": "c",
            "writer_id": "writer-b", "epoch": INT64_MAX,
            "writer_time": "2038-01-19T03:14:08.000000+00:00",
            "recorded_at": "2038-01-19T03:14:07.999999+00:00",
            **_UNSIGNED, "prev_hash": hashlib.sha256(b"canonlog").hexdigest(),
        },
    ),
    (
        "escapes-and-numbers",
        "A payload exercising canonical JSON: the short escapes, \\u00xx (lowercase "
        "hex) for other control characters, DEL and U+2028 literal, '/' unescaped, floats "
        "in shortest form with and without exponent, -0.0, nested arrays and objects.",
        {
            "ledger_id": "main", "sequence": 100,
            "event_id": "5a2e3f4c-1b6d-4e8f-9a0b-c1d2e3f4a5b6",
            "stream_id": "json/edge", "stream_version": 10, "event_type": "Edge",
            "payload": {
                "str": "quote\" backslash\\ slash/ \b\f\n\r\t \x01\x1f \x7f \u2028",
                "floats": [0.1, 1e16, 1e15, 1e-05, 0.0001, -0.0, 5e-324, 1.7976931348623157e308,
                           100.0, 2.5],
                "ints": [0, -1, 10],
                "nested": {"z": [], "a": {}, "m": [None, True, False]},
            },
            "metadata": {"b": 1, "a": 2},
            "task_id": None, "execution_id": "e", "correlation_id": None,
            "causation_id": "c", "agent_id": None,
            "writer_id": "w", "epoch": 7, "writer_time": None,
            "recorded_at": "2024-02-29T23:59:59.999999+00:00",
            **_UNSIGNED, "prev_hash": "0123456789abcdef" * 4,
        },
    ),
]

REQUEST_VECTORS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "single-event-context-absent",
        "One event, every optional id absent.",
        {"stream_id": "orders-42", **{k: None for k in
                                      ("task_id", "correlation_id", "causation_id", "agent_id")},
         "events": [("OrderPlaced", {"total": 1}, {})]},
    ),
    (
        "two-events-context-present",
        "Two events, every optional id present, non-ASCII text.",
        {"stream_id": "注文-🧾", "task_id": "task-7", "correlation_id": "corr-7",
         "causation_id": "cause-7", "agent_id": "エージェント",
         "events": [("OrderPlaced", {"emoji": "🙂"}, {"source": "api"}),
                    ("OrderConfirmed", {}, {})]},
    ),
    (
        "two-events-swapped",
        "The events of the previous vector in the other order: a different digest.",
        {"stream_id": "注文-🧾", "task_id": "task-7", "correlation_id": "corr-7",
         "causation_id": "cause-7", "agent_id": "エージェント",
         "events": [("OrderConfirmed", {}, {}),
                    ("OrderPlaced", {"emoji": "🙂"}, {"source": "api"})]},
    ),
    (
        "empty-objects-some-ids",
        "Empty payload and metadata; only task_id and agent_id present.",
        {"stream_id": "s", "task_id": "t", "correlation_id": None, "causation_id": None,
         "agent_id": "a", "events": [("t", {}, {})]},
    ),
]

SIGNABLE_VECTORS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "signable-of-chained-signed-by-agent",
        "The signable content of the event vector 'chained-signed-by-agent' (execution_id "
        "absent, the other optional ids present), signed with the seed 000102...1f.",
        {key: _SIGNED_BY_AGENT[key] for key in (
            "ledger_id", "event_id", "stream_id", "event_type", "payload", "metadata",
            "task_id", "execution_id", "correlation_id", "causation_id", "agent_id",
            "signing_key_id", "signed_with")},
    ),
    (
        "signable-ids-absent",
        "Every optional id absent, payload and metadata {}, the nil UUID.",
        {"ledger_id": "main", "event_id": "00000000-0000-0000-0000-000000000000",
         "stream_id": "s", "event_type": "t", "payload": {}, "metadata": {},
         "task_id": None, "execution_id": None, "correlation_id": None, "causation_id": None,
         "agent_id": "a", "signing_key_id": "k", "signed_with": AGENT_KEY_SEED},
    ),
    (
        "signable-unicode-all-ids-present",
        "Every optional id present, non-ASCII text in the ids and the payload, signed "
        "with the seed 202122...3f.",
        {"ledger_id": "台帳", "event_id": "c232ab00-9414-11ec-b3c8-9f6bdeced846",
         "stream_id": "注文-🧾", "event_type": "注文確定",
         "payload": {"emoji": "🙂👍🏽", "combining": "e\u0301"}, "metadata": {"ユーザー": "山田"},
         "task_id": "tâche", "execution_id": "実行-1", "correlation_id": "corr-🧾",
         "causation_id": "cause-e\u0301", "agent_id": "エージェント",
         "signing_key_id": "エージェント-鍵-2", "signed_with": OTHER_KEY_SEED},
    ),
]


def _signable(fields: dict[str, Any]) -> bytes:
    return signable_content_v1(
        ledger_id=fields["ledger_id"], event_id=uuid.UUID(fields["event_id"]),
        stream_id=fields["stream_id"], event_type=fields["event_type"],
        payload=canonical_json(fields["payload"]), metadata=canonical_json(fields["metadata"]),
        task_id=fields["task_id"], execution_id=fields["execution_id"],
        correlation_id=fields["correlation_id"], causation_id=fields["causation_id"],
        agent_id=fields["agent_id"], signing_key_id=fields["signing_key_id"],
    )


def _signer(seed: bytes, content: bytes) -> dict[str, str]:
    """Signs content with the key of seed; returns the seed, public key, content and signature."""
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(content)
    if not signature_is_valid(_public_key(seed), signature, content):
        raise SystemExit("a test signature does not verify with canonlog.domain.signing")
    return {"private_key_seed": seed.hex(), "public_key": _public_key(seed).hex(),
            "signable_content": content.hex(), "signature": signature.hex()}


def _event_vector(name: str, description: str, fields: dict[str, Any], prev: str,
                  hashes: dict[str, str]) -> dict[str, Any]:
    if fields["prev_hash"] == "chain":
        prev_hash = prev
    elif isinstance(fields["prev_hash"], dict):
        prev_hash = hashes[fields["prev_hash"]["hash_of"]]
    else:
        prev_hash = fields["prev_hash"]
    writer_time = fields["writer_time"]
    seed = fields["signed_with"]
    signer = None if seed is None else _signer(seed, _signable(fields))
    event = VectorEvent(
        ledger_id=fields["ledger_id"],
        sequence=fields["sequence"],
        event_id=uuid.UUID(fields["event_id"]),
        stream_id=fields["stream_id"],
        stream_version=fields["stream_version"],
        event_type=fields["event_type"],
        payload=canonical_json(fields["payload"]),
        metadata=canonical_json(fields["metadata"]),
        task_id=fields["task_id"],
        execution_id=fields["execution_id"],
        correlation_id=fields["correlation_id"],
        causation_id=fields["causation_id"],
        agent_id=fields["agent_id"],
        writer_id=fields["writer_id"],
        epoch=fields["epoch"],
        writer_time=None if writer_time is None else datetime.fromisoformat(writer_time),
        recorded_at=datetime.fromisoformat(fields["recorded_at"]),
        signing_key_id=fields["signing_key_id"],
        signature=None if signer is None else bytes.fromhex(signer["signature"]),
        prev_hash=bytes.fromhex(prev_hash),
    )
    return {
        "name": name,
        "description": description,
        **{key: fields[key] for key in (
            "ledger_id", "sequence", "event_id", "stream_id", "stream_version", "event_type",
            "task_id", "execution_id", "correlation_id", "causation_id", "agent_id",
            "writer_id", "epoch", "writer_time", "recorded_at", "signing_key_id")},
        "payload": event.payload.decode("utf-8"),
        "metadata": event.metadata.decode("utf-8"),
        "signature": None if event.signature is None else event.signature.hex(),
        "signer": None if signer is None else {
            key: signer[key] for key in ("private_key_seed", "public_key", "signable_content")
        },
        "prev_hash": prev_hash,
        "hash_input": event_hash_input_v1(event).hex(),
        "hash": event_hash_v1(event).hex(),
    }


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _opt(value: str | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + _frame(value.encode("utf-8"))


def _request_vector(name: str, description: str, fields: dict[str, Any]) -> dict[str, Any]:
    events = [(kind, canonical_json(payload), canonical_json(metadata))
              for kind, payload, metadata in fields["events"]]
    context = [fields[key] for key in ("task_id", "correlation_id", "causation_id", "agent_id")]
    digest = request_digest_v1(fields["stream_id"], *context, events)
    # The module exposes only the digest; spell out its input too, and prove it matches.
    digest_input = b"".join([
        _frame(b"canonlog/request/v1"), _frame(fields["stream_id"].encode("utf-8")),
        *(_opt(value) for value in context), len(events).to_bytes(4, "big"),
        *(_frame(kind.encode("utf-8")) + _frame(payload) + _frame(metadata)
          for kind, payload, metadata in events),
    ])
    if hashlib.sha256(digest_input).digest() != digest:
        raise SystemExit(f"request vector {name}: the spelled-out input disagrees with hashing.py")
    return {
        "name": name,
        "description": description,
        "stream_id": fields["stream_id"],
        "task_id": fields["task_id"],
        "correlation_id": fields["correlation_id"],
        "causation_id": fields["causation_id"],
        "agent_id": fields["agent_id"],
        "events": [{"event_type": kind, "payload": payload.decode("utf-8"),
                    "metadata": metadata.decode("utf-8")} for kind, payload, metadata in events],
        "digest_input": digest_input.hex(),
        "digest": digest.hex(),
    }


def _signable_vector(name: str, description: str, fields: dict[str, Any]) -> dict[str, Any]:
    signer = _signer(fields["signed_with"], _signable(fields))
    return {
        "name": name,
        "description": description,
        **{key: fields[key] for key in (
            "ledger_id", "event_id", "stream_id", "event_type", "task_id", "execution_id",
            "correlation_id", "causation_id", "agent_id", "signing_key_id")},
        "payload": canonical_json(fields["payload"]).decode("utf-8"),
        "metadata": canonical_json(fields["metadata"]).decode("utf-8"),
        **signer,
    }


def build() -> dict[str, Any]:
    """Returns the vectors document."""
    events: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    prev = GENESIS
    for name, description, fields in EVENT_VECTORS:
        vector = _event_vector(name, description, fields, prev, hashes)
        events.append(vector)
        prev = hashes[name] = vector["hash"]
    return {
        "spec": "canonlog hash v1 (docs/reference/hash-spec.md)",
        "genesis_prev_hash": GENESIS,
        "event_hash_v1": events,
        "request_digest_v1": [_request_vector(*entry) for entry in REQUEST_VECTORS],
        "signable_v1": [_signable_vector(*entry) for entry in SIGNABLE_VECTORS],
    }


def render() -> str:
    """Returns the file text: sorted keys, indent 2, UTF-8, trailing newline."""
    return json.dumps(build(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when hash_v1.json differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text("utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run python {Path(__file__).as_posix()}")
            return 1
        return 0
    OUTPUT.write_text(text, "utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
