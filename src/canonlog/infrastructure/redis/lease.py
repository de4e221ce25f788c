"""The writer lease on Redis: one key per ledger, holding the holder's token."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import redis.asyncio
from redis.exceptions import RedisError

from canonlog.domain.errors import StorageError

#: The fraction of the ttl a holder gives up in advance: Redis measures the ttl
#: on its own clock from when it received the command, the holder from when it
#: sent it, and the two clocks may run at slightly different rates.
SAFETY_MARGIN = 0.1

# Compare-and-extend and compare-and-delete must be atomic: a GET followed by a
# separate PEXPIRE or DEL could act on a key another holder took in between.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def redis_address(client: redis.asyncio.Redis) -> str:
    """Where the client connects, for error messages (never with credentials)."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class RedisLease:
    """WriterLease on Redis: ``SET key token NX PX ttl``, renewed and released by compare-and-set.

    The key is ``{key_prefix}:lease:{ledger_id}`` and its value a token unique to
    this instance, so a holder never extends or deletes a lease it lost to
    another instance, even one of the same writer id. The client should be
    created with a ``socket_timeout`` well below the ttl; acquire and renew also
    give up after half the ttl on their own.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        ledger_id: str,
        writer_id: str,
        *,
        ttl: float,
        key_prefix: str = "canonlog",
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        self._client = client
        self._ledger_id = ledger_id
        self._key = f"{key_prefix}:lease:{ledger_id}"
        self._token = f"{writer_id}:{uuid4().hex}"
        # Redis takes whole milliseconds; the deadline is computed from the
        # value actually sent, so rounding can never lengthen the holder's belief.
        self._ttl_ms = max(1, round(ttl * 1000))
        self._ttl = self._ttl_ms / 1000
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._valid_until = 0.0

    @property
    def token(self) -> str:
        """The value this instance stores under the lease key while it holds the lease."""
        return self._token

    @property
    def key(self) -> str:
        return self._key

    async def acquire(self) -> bool:
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._ttl / 2):
                taken = await self._client.set(self._key, self._token, nx=True, px=self._ttl_ms)
                # SET NX also fails when this very instance holds the key (a
                # retried acquire, or one after a renew that timed out):
                # that is still ours to keep.
                if not taken:
                    taken = await self._extend()
        except (RedisError, OSError) as exc:
            raise StorageError(
                f"could not acquire the writer lease of ledger {self._ledger_id} "
                f"at Redis {redis_address(self._client)}: {exc or type(exc).__name__}"
            ) from exc
        if not taken:
            return False
        self._valid_until = sent + self._ttl * (1 - SAFETY_MARGIN)
        return True

    async def renew(self) -> bool:
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._ttl / 2):
                extended = await self._extend()
        except (RedisError, OSError):
            # Unknown outcome: the deadline stays where the last confirmed
            # acquire or renew put it, which is never later than Redis's expiry.
            return False
        if not extended:
            self._valid_until = 0.0
            return False
        self._valid_until = sent + self._ttl * (1 - SAFETY_MARGIN)
        return True

    async def release(self) -> None:
        self._valid_until = 0.0
        try:
            async with asyncio.timeout(self._ttl / 2):
                await self._release_script(keys=[self._key], args=[self._token])
        except (RedisError, OSError):
            # Unreleased, the key simply expires after the ttl.
            pass

    def valid_until(self) -> float:
        return self._valid_until

    async def _extend(self) -> bool:
        result = await self._renew_script(keys=[self._key], args=[self._token, self._ttl_ms])
        return bool(result)
