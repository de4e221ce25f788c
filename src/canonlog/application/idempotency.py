"""Idempotency for requests from outside: webhook deliveries, API retries from
clients that carry no execution id.

A result is stored under the request's key for a time to live (24 hours by
default) and returned to every retry until it expires; expired records are
deleted by cleanup_expired(), which reconciliation runs on its schedule. Unlike
the ledger's execution ids, which never expire and guard the chain itself, these
keys bound how long a retry is recognised; they guard work done around the chain.
"""

from __future__ import annotations

import hashlib
from typing import Any

from canonlog.application.ports import IdempotencyStore
from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import InvalidIdempotencyKey

#: How long a stored result is returned to retries, by default: a day.
DEFAULT_TTL = 24 * 3600.0


def generate_idempotency_key(operation: str, aggregate_id: str, payload: Any) -> str:
    """Returns ``operation:aggregate_id:`` and the first 16 hex digits of the SHA-256
    of the payload's canonical JSON, so equal payloads (however their keys were
    ordered or spaced) give one key. Raises InvalidEvent for a payload that is not
    canonical JSON material (NaN, unpaired surrogates, too deep)."""
    if not operation or not aggregate_id:
        raise InvalidIdempotencyKey("operation and aggregate_id must not be empty")
    digest = hashlib.sha256(canonical_json(payload, what="idempotency payload")).hexdigest()
    return f"{operation}:{aggregate_id}:{digest[:16]}"


class IdempotencyService:
    """Checks and stores results of outside requests by key."""

    def __init__(self, store: IdempotencyStore, *, default_ttl: float = DEFAULT_TTL) -> None:
        if default_ttl <= 0:
            raise InvalidIdempotencyKey("default_ttl must be positive")
        self._store = store
        self._default_ttl = default_ttl

    async def check(self, key: str) -> Any | None:
        """Returns the result stored under key, or None when there is none or it expired."""
        _check_key(key)
        return await self._store.get(key)

    async def store(self, key: str, result: Any, ttl: float | None = None) -> Any:
        """Stores result under key for ttl seconds unless a live result is there, and
        returns the result that holds: of concurrent stores of one key, exactly one
        wins and every caller gets the winner's result."""
        _check_key(key)
        ttl = self._default_ttl if ttl is None else ttl
        if ttl <= 0:
            raise InvalidIdempotencyKey("ttl must be positive")
        canonical_json(result, what="idempotency result")
        return await self._store.put_if_absent(key, result, ttl)

    async def cleanup_expired(self) -> int:
        """Deletes expired records; returns how many."""
        return await self._store.delete_expired()


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= 512:
        raise InvalidIdempotencyKey("an idempotency key is 1 to 512 characters")
