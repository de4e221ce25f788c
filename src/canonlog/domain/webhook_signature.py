"""Signing webhook bodies with HMAC-SHA256, and checking a signature and its age.

The signed text is the decimal Unix timestamp, a full stop, then the raw body, so a
signature cannot be moved to another body or another moment. The signature header
is ``v1=`` followed by the lowercase hex HMAC; the timestamp travels beside it.
"""

from __future__ import annotations

import hashlib
import hmac

from canonlog.domain.errors import WebhookRejected

SCHEME = "v1"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Returns the signature header value for body sent at timestamp."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: bytes, signature: str | None, timestamp: str | None, body: bytes, *,
           now: float, window: float) -> int:
    """Returns the timestamp when signature signs body at that moment and the moment is
    within window seconds of now; raises WebhookRejected naming what is wrong.
    The comparison takes the same time whatever the signature holds."""
    if not signature or not timestamp:
        raise WebhookRejected("the signature or timestamp header is missing")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookRejected("the timestamp is not a Unix time in seconds")
    moment = int(timestamp)
    if abs(now - moment) > window:
        raise WebhookRejected(f"the timestamp is outside the {window:g} s replay window")
    expected = sign(secret, moment, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise WebhookRejected("the signature does not match the body")
    return moment
