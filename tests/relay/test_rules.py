"""The relay's pure rules: backoff bounds, sync status, range digests, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from canonlog.domain.errors import InvalidConsumer, WebhookRejected
from canonlog.domain.relay import (
    Backoff,
    ConsumerSettings,
    DeliveryFailure,
    range_digest,
    status_of,
)
from canonlog.domain.webhook_signature import sign, verify


def test_backoff_doubles_up_to_its_cap_and_jitters_within_half_of_it():
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.delay(n, lambda: 0.999999) for n in (1, 2, 3, 4, 5)] == \
        pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0], rel=1e-5)
    assert [backoff.delay(n, lambda: 0.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


def test_status_is_failure_first_then_synced_at_or_below_the_cursor():
    failure = DeliveryFailure("c", 5, b"h" * 32, "dead_letter", 3, "boom", None)  # type: ignore[arg-type]
    assert status_of(5, 9, failure) == "dead_letter"
    assert (status_of(4, 9, None), status_of(10, 9, None)) == ("synced", "pending")


def test_range_digest_covers_sequences_and_hashes_in_order():
    pairs = [(1, b"a" * 32), (2, b"b" * 32)]
    expected = hashlib.sha256((1).to_bytes(8, "big") + b"a" * 32 +
                              (2).to_bytes(8, "big") + b"b" * 32).digest()
    assert range_digest(1, 2, pairs).digest == expected
    assert range_digest(1, 2, pairs).count == 2
    assert range_digest(1, 2, []).digest == hashlib.sha256(b"").digest()
    assert range_digest(1, 2, [(1, b"a" * 32), (3, b"b" * 32)]) != range_digest(1, 2, pairs)


def test_consumer_settings_refuse_bad_names_and_policies():
    for bad in ({"name": ""}, {"name": "x" * 129}, {"name": "a\nb"},
                {"poison_policy": "ignore"}, {"max_attempts": 0}):
        with pytest.raises(InvalidConsumer):
            ConsumerSettings(**({"name": "c", "ledger_id": "main"} | bad))


def test_a_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", 1700000000, b"{}") == f"v1={expected}"
    assert verify(b"k", f"v1={expected}", "1700000000", b"{}", now=1700000100,
                  window=300) == 1700000000


@pytest.mark.parametrize(("signature", "timestamp", "body", "message"), [
    (None, "1700000000", b"{}", "missing"),
    ("v1=00", "1700000000", b"{}", "does not match"),
    ("ok", "1699999000", b"{}", "outside the 300 s replay window"),
    ("ok", "17e8", b"{}", "not a Unix time"),
    ("ok", "1700000000", b"{ }", "does not match"),
    ("ok", "1700000000", b"{}", None),
])
def test_a_bad_signature_or_stale_timestamp_is_refused(signature, timestamp, body, message):
    if signature == "ok":
        signature = sign(b"k", int(timestamp) if timestamp.isdigit() else 0, b"{}")
    if message is None:
        assert verify(b"k", signature, timestamp, body, now=1700000000, window=300)
        return
    with pytest.raises(WebhookRejected, match=message):
        verify(b"k", signature, timestamp, body, now=1700000000, window=300)
