"""AppendDeadlines: one timer fails exactly the appends still unresolved at their deadline."""

from __future__ import annotations

import asyncio

from canonlog.application.append_queue import AppendDeadlines
from canonlog.application.ports import AppendResult
from canonlog.domain.events import AppendRequest, NewEvent


def _request(stream: str) -> AppendRequest:
    return AppendRequest.create(stream, [NewEvent.create("x", {})])


async def test_only_unresolved_appends_expire_each_at_its_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    watched: dict[str, float] = {}
    expired: dict[str, float] = {}
    deadlines = AppendDeadlines(0.05, lambda future, request: (
        expired.__setitem__(request.stream_id, loop.time()), future.cancel()))
    futures: dict[str, asyncio.Future[AppendResult]] = {}
    for name in ("a", "b", "c"):
        futures[name] = loop.create_future()
        watched[name] = loop.time()
        deadlines.watch(futures[name], _request(name))
        if name == "b":
            futures["b"].set_result(None)  # type: ignore[arg-type]
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert list(expired) == ["a", "c"]
    assert all(expired[name] - watched[name] >= 0.05 for name in expired)
    assert futures["a"].cancelled() and futures["c"].cancelled() and not futures["b"].cancelled()


async def test_resolved_appends_leave_the_line_and_close_stops_every_expiry() -> None:
    loop = asyncio.get_running_loop()
    expired: list[str] = []
    deadlines = AppendDeadlines(0.05, lambda _f, request: expired.append(request.stream_id))
    for n in range(1000):
        future: asyncio.Future[AppendResult] = loop.create_future()
        deadlines.watch(future, _request(f"s{n}"))
        future.set_result(None)  # type: ignore[arg-type]
    assert len(deadlines._line) == 1
    pending: asyncio.Future[AppendResult] = loop.create_future()
    deadlines.watch(pending, _request("late"))
    deadlines.close()
    await asyncio.sleep(0.1)
    assert expired == [] and not pending.done()
