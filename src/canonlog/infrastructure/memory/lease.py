"""The writer lease within one process: a dict instead of Redis, same semantics."""

from __future__ import annotations

import time
from uuid import uuid4

#: The fraction of the ttl a holder gives up in advance, so that it stops
#: believing in the lease before the store lets someone else take it.
SAFETY_MARGIN = 0.1

#: ledger id -> (holder token, time.monotonic() instant the lease expires)
_REGISTRY: dict[str, tuple[str, float]] = {}


class InMemoryLease:
    """WriterLease over a dict shared by every lease of this process (or the registry passed).

    Only leases sharing a registry exclude each other, so this serves a single
    process: canonlog.testing, demos, the in-memory event log. The registry
    holds each ledger's holder token and expiry; an expired entry is free.
    """

    def __init__(
        self,
        ledger_id: str,
        writer_id: str,
        *,
        ttl: float,
        registry: dict[str, tuple[str, float]] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        self._ledger_id = ledger_id
        self._ttl = ttl
        self._token = f"{writer_id}:{uuid4().hex}"
        self._registry = _REGISTRY if registry is None else registry
        self._valid_until = 0.0

    @property
    def token(self) -> str:
        """What identifies this instance as the holder; unique per instance."""
        return self._token

    async def acquire(self) -> bool:
        now = time.monotonic()
        entry = self._registry.get(self._ledger_id)
        if entry is not None and entry[0] != self._token and entry[1] > now:
            return False
        self._take(now)
        return True

    async def renew(self) -> bool:
        now = time.monotonic()
        entry = self._registry.get(self._ledger_id)
        if entry is None or entry[0] != self._token or entry[1] <= now:
            self._valid_until = 0.0
            return False
        self._take(now)
        return True

    async def release(self) -> None:
        entry = self._registry.get(self._ledger_id)
        if entry is not None and entry[0] == self._token:
            del self._registry[self._ledger_id]
        self._valid_until = 0.0

    def valid_until(self) -> float:
        return self._valid_until

    def _take(self, now: float) -> None:
        self._registry[self._ledger_id] = (self._token, now + self._ttl)
        self._valid_until = now + self._ttl * (1 - SAFETY_MARGIN)
