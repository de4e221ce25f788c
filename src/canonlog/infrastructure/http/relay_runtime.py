"""The relay inside the HTTP service: webhook intake, its processing consumer, and
per-consumer metrics.

It runs when the service is configured for it (CANONLOG_WEBHOOK_INTAKE_SECRET or
CANONLOG_RELAY_DESTINATIONS); consumers with destinations run in `canonlog relay
run` processes, the service reports on them. The intake consumer runs here, in
the background, under its lease; if it stops, its state says why and the
service's status endpoint shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Gauge

from canonlog.application.ports import EventStore
from canonlog.application.relay import consumer_status
from canonlog.application.webhook_intake import (
    INTAKE_CONSUMER,
    WebhookHandler,
    WebhookIntake,
    WebhookProcessing,
)
from canonlog.domain.errors import CanonlogError, ConsumerStopped, HistoryRewritten
from canonlog.infrastructure.bootstrap import RelayWiring, open_relay
from canonlog.infrastructure.http.metrics import ServiceMetrics
from canonlog.infrastructure.settings import Settings

log = structlog.get_logger("canonlog.relay")

#: Seconds between refreshes of the relay's gauges.
GAUGE_INTERVAL = 2.0
#: Seconds between deletions of expired idempotency records.
CLEANUP_INTERVAL = 3600.0


async def log_delivery(source: str, delivery_id: str, body: Any) -> None:
    """The default processing of a recorded delivery: log that it was processed."""
    log.info("webhook delivery processed", source=source, delivery_id=delivery_id)


@dataclass
class RelayRuntime:
    """What the relay routes use: the wiring, and the intake when it is configured."""

    wiring: RelayWiring
    intake: WebhookIntake | None


class RelayGauges:
    """Lag, failures and dead letters of every consumer, in the service's registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.lag_events = Gauge("canonlog_relay_lag_events", "Events after a consumer's cursor.",
                                ["consumer"], registry=registry)
        self.lag_seconds = Gauge("canonlog_relay_lag_seconds",
                                 "Age of a consumer's oldest unsynced event.", ["consumer"],
                                 registry=registry)
        self.failing = Gauge("canonlog_relay_failing_events",
                             "Events a consumer is retrying.", ["consumer"], registry=registry)
        self.dead_letters = Gauge("canonlog_relay_dead_letters",
                                  "Events a consumer set aside as dead letters.", ["consumer"],
                                  registry=registry)
        self.stopped = Gauge("canonlog_relay_stopped", "1 while a consumer is stopped.",
                             ["consumer"], registry=registry)

    async def refresh(self, wiring: RelayWiring) -> None:
        for state in await wiring.store.consumers():
            status = await consumer_status(state.name, wiring.log, wiring.store)
            self.lag_events.labels(state.name).set(status.lag_events)
            self.lag_seconds.labels(state.name).set(status.lag_seconds)
            self.failing.labels(state.name).set(status.failing)
            self.dead_letters.labels(state.name).set(status.dead_letters)
            self.stopped.labels(state.name).set(1 if state.stopped else 0)


async def _keep_gauges(gauges: RelayGauges, wiring: RelayWiring) -> None:
    """Refreshes the gauges, and deletes expired idempotency records once an hour."""
    cleaned = time.monotonic()
    while True:
        await asyncio.sleep(GAUGE_INTERVAL)
        try:
            await gauges.refresh(wiring)
            if time.monotonic() - cleaned > CLEANUP_INTERVAL:
                cleaned = time.monotonic()
                expired = await wiring.idempotency.cleanup_expired()
                log.info("expired idempotency records deleted", count=expired)
        except CanonlogError as exc:
            log.warning("relay housekeeping failed", error=str(exc))


async def _run_intake_consumer(wiring: RelayWiring, handler: WebhookHandler) -> None:
    """Runs the intake consumer until cancelled; a failure is logged and retried, a stop
    (poison delivery under the stop policy, rewritten history) is logged and left for
    an operator, as its stored state says."""
    consumer = wiring.consumer(INTAKE_CONSUMER, WebhookProcessing(handler))
    while True:
        try:
            await consumer.run(wiring.lease())
            return
        except (ConsumerStopped, HistoryRewritten) as exc:
            log.error("webhook intake consumer stopped", error=str(exc))
            return
        except CanonlogError as exc:
            log.warning("webhook intake consumer failed; restarting", error=str(exc))
            await asyncio.sleep(wiring.settings.relay_poll_interval)


def relay_configured(settings: Settings) -> bool:
    """Whether the service runs the relay (and serves its routes)."""
    return bool(settings.webhook_intake_secret or settings.relay_destinations.strip())


@asynccontextmanager
async def relay_runtime(settings: Settings, events: EventStore, metrics: ServiceMetrics,
                        handler: WebhookHandler = log_delivery
                        ) -> AsyncIterator[RelayRuntime | None]:
    """Yields the relay's runtime, or None when the service is not configured for it."""
    if not relay_configured(settings):
        yield None
        return
    async with open_relay(settings) as wiring:
        intake = None
        if settings.webhook_intake_secret:
            await wiring.store.register(wiring.consumer_settings(INTAKE_CONSUMER))
            intake = WebhookIntake(events, wiring.idempotency, wiring.store,
                                   settings.webhook_intake_secret.encode("utf-8"),
                                   replay_window=settings.webhook_replay_window)
        gauges = RelayGauges(metrics)
        await gauges.refresh(wiring)
        tasks = [asyncio.ensure_future(_keep_gauges(gauges, wiring))]
        if intake is not None:
            tasks.append(asyncio.ensure_future(_run_intake_consumer(wiring, handler)))
        try:
            yield RelayRuntime(wiring, intake)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, CanonlogError):
                    await task
