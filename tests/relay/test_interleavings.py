"""Whatever the order of appends, destination outages, relay restarts and crashes
between a confirmed delivery and the cursor's move, every destination ends equal to
the chain once the relay catches up."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canonlog.application.relay import RelayConfig, RelayConsumer
from canonlog.domain.errors import DestinationError
from canonlog.domain.relay import Backoff, ConsumerSettings
from canonlog.infrastructure.destinations import open_destination
from tests.relay.conftest import LEDGER

CONFIG = RelayConfig(batch_size=7, poll_interval=0.01, backoff=Backoff(base=0.001, cap=0.002))

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 6)),
    st.tuples(st.just("down"), st.sampled_from(["projection", "stream", "file"])),
    st.tuples(st.just("up"), st.sampled_from(["projection", "stream", "file"])),
    st.tuples(st.just("step"), st.integers(1, 4)),
    st.tuples(st.just("restart"), st.just(0)),
    st.tuples(st.just("crash_after_confirm"), st.sampled_from(["projection", "stream", "file"])),
), min_size=3, max_size=14)


class Switch:
    """A real destination that can be taken down, as a network partition would."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False

    async def deliver(self, events) -> None:
        if self.down:
            raise DestinationError("destination unreachable")
        await self.inner.deliver(events)

    async def close(self) -> None:
        await self.inner.close()


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
async def test_every_destination_ends_equal_to_the_chain(ledger, store, projection_dsn,
                                                         redis_url, tmp_path, ops):
    run = uuid.uuid4().hex[:8]
    urls = {"projection": projection_dsn, "stream": f"{redis_url}?stream=prop:{run}",
            "file": f"file://{tmp_path}/{run}.jsonl"}
    switches = {kind: Switch(await open_destination(url)) for kind, url in urls.items()}
    names = {kind: f"{kind}-{run}" for kind in urls}
    for name in names.values():
        await store.register(ConsumerSettings(name, LEDGER, "stop", max_attempts=10**6))

    def consumers() -> dict[str, RelayConsumer]:
        return {kind: RelayConsumer(names[kind], ledger.log, store, switches[kind], config=CONFIG)
                for kind in urls}

    relays = consumers()
    try:
        for op, arg in ops:
            if op == "append":
                await ledger.append(arg)
            elif op in ("down", "up"):
                switches[arg].down = op == "down"
            elif op == "step":
                for relay in relays.values():
                    for _ in range(arg):
                        await relay.step()
            elif op == "restart":
                relays = consumers()
            elif op == "crash_after_confirm" and not switches[arg].down:
                cursor = (await store.consumer(names[arg])).cursor_seq
                events = await ledger.log.read_all(LEDGER, after=cursor, limit=5)
                await switches[arg].deliver(events)  # confirmed; the cursor never moves
                relays = consumers()
        for switch in switches.values():
            switch.down = False
        head = (await ledger.log.head(LEDGER)).sequence
        chain = {e.sequence: e.hash for e in await ledger.log.read_all(LEDGER, limit=10_000)}
        for kind, relay in relays.items():
            await relay.drain()
            assert (await store.consumer(names[kind])).cursor_seq == head
            assert await switches[kind].inner.entries(LEDGER, 1, head) == chain, kind
    finally:
        for switch in switches.values():
            await switch.close()
