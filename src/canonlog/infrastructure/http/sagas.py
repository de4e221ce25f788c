"""Sagas in the service: the orchestrator on the service's own writer, the recovery
worker in the background, and the saga metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import structlog
from prometheus_client import Counter, Gauge, Histogram

from canonlog.application.client import LedgerClient
from canonlog.application.saga_recovery import SagaIndex, SagaRecoveryWorker
from canonlog.application.sagas import SagaOrchestrator
from canonlog.domain.saga import SagaStatus
from canonlog.infrastructure.http.metrics import ServiceMetrics
from canonlog.infrastructure.settings import Settings

log = structlog.get_logger("canonlog.http.sagas")

_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _count(index: SagaIndex, status: SagaStatus) -> float:
    return float(index.counts()[status])


class SagaMetrics:
    """SagaObserver feeding the service's registry: sagas by state (as of the index's last
    refresh), step latency, retries and compensations."""

    def __init__(self, metrics: ServiceMetrics, index: SagaIndex) -> None:
        registry = metrics.registry
        self.sagas = Gauge("canonlog_sagas", "Sagas by state, as of the last refresh.",
                           ["state"], registry=registry)
        for status in SagaStatus:
            self.sagas.labels(status.value).set_function(partial(_count, index, status))
        self.step_seconds = Histogram(
            "canonlog_saga_step_seconds", "Time a saga step's backend took, by outcome.",
            ["backend", "outcome"], buckets=_STEP_BUCKETS, registry=registry)
        self.retries = Counter("canonlog_saga_step_retries", "Saga steps run again.",
                               ["backend"], registry=registry)
        self.compensations = Counter("canonlog_saga_compensations",
                                     "Compensations run, by outcome.", ["backend", "outcome"],
                                     registry=registry)

    def step_finished(self, backend: str, outcome: str, seconds: float, retry: bool) -> None:
        self.step_seconds.labels(backend, outcome).observe(seconds)
        if retry:
            self.retries.labels(backend).inc()

    def compensation_finished(self, backend: str, outcome: str) -> None:
        self.compensations.labels(backend, outcome).inc()


class SagaService:
    """What the saga routes use: the orchestrator and the index of the service's ledger."""

    def __init__(self, orchestrator: SagaOrchestrator, index: SagaIndex,
                 worker: SagaRecoveryWorker) -> None:
        self.orchestrator = orchestrator
        self.index = index
        self.worker = worker


def sagas_configured(settings: Settings) -> bool:
    return bool(settings.saga_backend_dsn or settings.saga_redis_url or settings.saga_files_dir)


@asynccontextmanager
async def open_saga_service(settings: Settings, client: LedgerClient,
                            metrics: ServiceMetrics) -> AsyncIterator[SagaService | None]:
    """Yields the saga service with its worker running, or None when no saga backend is
    configured (the saga routes then answer 503)."""
    if not sagas_configured(settings):
        yield None
        return
    from canonlog.infrastructure.bootstrap import open_sagas

    index = SagaIndex(client.event_log, client.ledger_id)
    async with open_sagas(settings, client, observer=SagaMetrics(metrics, index)) as sagas:
        worker = SagaRecoveryWorker(sagas, index, stale_after=settings.saga_stale_after,
                                    interval=settings.saga_worker_interval)
        Gauge("canonlog_saga_worker_failing", "1 when the saga worker's last pass failed or "
              "left a saga failing to resume.", registry=metrics.registry
              ).set_function(lambda: float(worker.failing))
        Gauge("canonlog_saga_worker_passes", "Passes the saga worker has finished.",
              registry=metrics.registry).set_function(lambda: float(worker.passes))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="saga-worker")
        log.info("sagas ready", backends=sorted(sagas.catalogue().operations))
        try:
            yield SagaService(sagas, index, worker)
        finally:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
