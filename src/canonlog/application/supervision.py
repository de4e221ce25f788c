"""Background tasks that never die silently.

A supervised task that raises is logged with its cause, reported to its owner
(which fails whatever waited on the task) and restarted after a short backoff;
the failures stay readable as `problems` for a health check. Cancellation is
how an owner stops a task, and is never treated as a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: Problems kept for the health check; older ones are forgotten.
_KEPT = 20
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class TaskProblem:
    """One unexpected failure of a background task."""

    task: str
    error: str
    #: time.time() when it failed.
    at: float


class TaskSupervisor:
    """Runs named coroutines as tasks, restarting each one that fails.

    on_failure(task_name, error) runs before the restart, so the owner can fail
    what was waiting on the task; it must not raise. A task stops being
    restarted once should_restart() is false (its owner is stopping).
    """

    def __init__(
        self,
        logger: Any,
        on_failure: Callable[[str, BaseException], None],
        *,
        should_restart: Callable[[], bool] = lambda: True,
    ) -> None:
        self._logger = logger
        self._on_failure = on_failure
        self._should_restart = should_restart
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._problems: deque[TaskProblem] = deque(maxlen=_KEPT)
        self.restarts = 0

    @property
    def problems(self) -> tuple[TaskProblem, ...]:
        """The most recent unexpected failures, oldest first."""
        return tuple(self._problems)

    @property
    def tasks(self) -> dict[str, asyncio.Task[None]]:
        return dict(self._tasks)

    def start(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Starts body() as the task `name`; it is restarted whenever it raises."""
        task = asyncio.create_task(self._run(name, body), name=name)
        self._tasks[name] = task
        return task

    async def _run(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            started = time.monotonic()
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._problems.append(TaskProblem(name, f"{type(exc).__name__}: {exc}",
                                                  time.time()))
                self._logger.error("background task failed", task=name,
                                   error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                self._on_failure(name, exc)
                if not self._should_restart():
                    self._logger.critical("background task not restarted: its owner stopped",
                                          task=name)
                    return
            if time.monotonic() - started > _MAX_BACKOFF:
                backoff = _FIRST_BACKOFF  # it had recovered: a new failure starts afresh
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            self.restarts += 1
            self._logger.warning("background task restarted", task=name, restarts=self.restarts)

    async def cancel(self, *names: str) -> None:
        """Cancels the named tasks (every task when none is named) and waits for them."""
        chosen = [self._tasks[n] for n in names if n in self._tasks] if names \
            else list(self._tasks.values())
        for task in chosen:
            task.cancel()
        await asyncio.gather(*chosen, return_exceptions=True)

    async def wait(self, *names: str) -> None:
        """Waits for the named tasks to return by themselves."""
        await asyncio.gather(*(self._tasks[n] for n in names if n in self._tasks),
                             return_exceptions=True)
