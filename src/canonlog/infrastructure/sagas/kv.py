"""The key-value saga backend on Redis or Valkey."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from canonlog.application.ports import StepOutcome
from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import BackendRejected, BackendUnavailable
from canonlog.domain.saga import SagaStep

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: Sets the applied marker (KEYS[1]) only if absent and, in the same atomic script,
#: the value (KEYS[2]); returns 1 when it did, 0 when the marker was there. Scripts
#: run atomically: https://valkey.io/topics/eval-intro/
_SET_ONCE: Final = """
if redis.call('SET', KEYS[1], KEYS[2], 'NX') then
  if tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  else
    redis.call('SET', KEYS[2], ARGV[1])
  end
  return 1
end
return 0
"""
MARKER_PREFIX: Final = "canonlog:saga-applied:"


class KeyValueBackend:
    """Keys in Redis or Valkey. ``set`` takes {"key", "value", "ttl_ms"?}: a string value
    is stored as is, anything else as canonical JSON. The step's idempotency key is kept
    as a marker key (never expired), so a key is set at most once per step even after
    a compensation deleted it."""

    kind = "kv"
    operations = frozenset({"set"})

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def apply(self, step: SagaStep) -> StepOutcome:
        p = step.payload_object()
        key, value, ttl = p.get("key"), p.get("value"), p.get("ttl_ms", 0)
        if not isinstance(key, str) or not key or key.startswith(MARKER_PREFIX):
            raise BackendRejected(f"set needs a 'key' string outside {MARKER_PREFIX}*")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise BackendRejected("ttl_ms must be a non-negative integer")
        text = value if isinstance(value, str) else canonical_json({"value": value})[9:-1]
        async with _errors("set"):
            done = await self._client.eval(_SET_ONCE, 2, MARKER_PREFIX + step.idempotency_key,
                                           key, text, ttl)
        return StepOutcome(applied=bool(done), result={"key": key})

    async def remove(self, step: SagaStep) -> None:
        key = step.payload_object().get("key")
        if not isinstance(key, str) or not key:
            raise BackendRejected("kv_delete needs the step's 'key'")
        async with _errors("delete"):
            await self._client.delete(key)


@asynccontextmanager
async def _errors(what: str) -> AsyncIterator[None]:
    from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError

    try:
        yield
    except ResponseError as exc:
        raise BackendRejected(f"{what}: {exc}") from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc
    except RedisError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc
