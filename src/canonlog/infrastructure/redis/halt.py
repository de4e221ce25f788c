"""The halt channel on Redis: one key per halted ledger, and a pub/sub channel for changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from canonlog.domain.errors import HaltStateUnknown, StorageError
from canonlog.infrastructure.redis.lease import redis_address


class RedisHaltChannel:
    """HaltChannel on Redis, shared by every process that uses the same server and prefix.

    ``{key_prefix}:halt:{ledger_id}`` holds the reason while the ledger is
    halted; each change is also published on ``{key_prefix}:halt`` as JSON
    ``{"ledger_id": ..., "reason": ...}`` (reason null on resume), which
    ``watch`` follows. Halt checks fail closed: create the client with a short
    ``socket_timeout`` (and ``socket_connect_timeout``), and every operation
    also gives up after ``timeout`` seconds, so an unreachable Redis refuses
    writes quickly instead of stalling them.
    """

    def __init__(
        self, client: redis.asyncio.Redis, *, key_prefix: str = "canonlog", timeout: float = 1.0
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._timeout = timeout

    @property
    def channel(self) -> str:
        """The pub/sub channel every halt and resume is announced on."""
        return f"{self._prefix}:halt"

    def key(self, ledger_id: str) -> str:
        return f"{self._prefix}:halt:{ledger_id}"

    async def halt_reason(self, ledger_id: str) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._client.get(self.key(ledger_id))
        except (RedisError, OSError) as exc:
            raise HaltStateUnknown(
                f"writes to ledger {ledger_id} are refused because its halt state is unknown: "
                f"Redis at {redis_address(self._client)} did not answer "
                f"({exc or type(exc).__name__})"
            ) from exc
        return _text(value)

    async def announce(self, ledger_id: str, reason: str | None) -> None:
        message = json.dumps({"ledger_id": ledger_id, "reason": reason})
        try:
            async with asyncio.timeout(self._timeout):
                # MULTI/EXEC: the state changes and is announced together, so a
                # watcher never hears of a change the key does not show.
                async with self._client.pipeline(transaction=True) as pipe:
                    if reason is None:
                        pipe.delete(self.key(ledger_id))
                    else:
                        pipe.set(self.key(ledger_id), reason)
                    pipe.publish(self.channel, message)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            what = "resume" if reason is None else "halt"
            raise StorageError(
                f"could not announce the {what} of ledger {ledger_id} "
                f"at Redis {redis_address(self._client)}: {exc or type(exc).__name__}"
            ) from exc

    async def watch(self, ledger_id: str) -> AsyncIterator[str | None]:
        """Yields each announced change of the ledger: the halt reason, or None on resume.

        Subscribes on first iteration, so only changes announced after that are
        seen; read ``halt_reason`` once subscribed to learn the current state.
        Raises HaltStateUnknown when the subscription breaks, since changes may
        then go unheard.
        """
        pubsub = self._client.pubsub()
        try:
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    change = _decode(message.get("data"))
                    if change is not None and change.get("ledger_id") == ledger_id:
                        reason = change.get("reason")
                        yield reason if isinstance(reason, str) else None
            except (RedisError, OSError) as exc:
                raise HaltStateUnknown(
                    f"lost the halt channel of ledger {ledger_id} "
                    f"at Redis {redis_address(self._client)}: {exc or type(exc).__name__}"
                ) from exc
        finally:
            with contextlib.suppress(RedisError, OSError):
                # redis-py leaves PubSub.aclose unannotated.
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _decode(data: Any) -> dict[str, Any] | None:
    """The announced change, or None for anything on the channel that is not one."""
    try:
        change = json.loads(data)
    except (TypeError, ValueError):
        return None
    return change if isinstance(change, dict) else None
