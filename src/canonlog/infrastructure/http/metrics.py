"""The service's Prometheus metrics, in a registry of its own per application."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Append latency buckets in seconds: a group commit takes about a millisecond on a
#: quiet machine, a halted or contended one up to the lease's renewal interval.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000)


class ServiceMetrics:
    """Counters, histograms and gauges of one service; rendered by /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.appends = Counter(
            "canonlog_appends", "Append requests by outcome (ok, replayed, or the error code).",
            ["outcome"], registry=self.registry)
        self.append_seconds = Histogram(
            "canonlog_append_seconds", "Time from receiving an append to its receipt.",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.append_events = Histogram(
            "canonlog_append_events", "Events per accepted append request.",
            buckets=_SIZE_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram(
            "canonlog_writer_batch_requests",
            "Append requests per database batch of the writer (group commit).",
            buckets=_SIZE_BUCKETS, registry=self.registry)
        self.batch_events = Histogram(
            "canonlog_writer_batch_events", "Events per database batch of the writer.",
            buckets=_SIZE_BUCKETS, registry=self.registry)
        self.http_requests = Counter(
            "canonlog_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self.http_seconds = Histogram(
            "canonlog_http_request_seconds", "HTTP request duration by route template.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.halted = Gauge(
            "canonlog_ledger_halted", "1 when the ledger is halted, 0 when not, -1 when unknown.",
            registry=self.registry)
        self.writer_accepting = Gauge(
            "canonlog_writer_accepting", "1 while the writer accepts writes.", registry=self.registry)
        self.lease_held = Gauge(
            "canonlog_writer_lease_held", "1 while the writer holds its lease.", registry=self.registry)
        self.head_sequence = Gauge(
            "canonlog_head_sequence", "The ledger's newest sequence.", registry=self.registry)
        self.verification_ok = Gauge(
            "canonlog_last_verification_ok", "1 when the last finished verification passed.",
            registry=self.registry)
        self.verification_time = Gauge(
            "canonlog_last_verification_timestamp_seconds",
            "Unix time the last verification finished.", registry=self.registry)

        self.append_queue_depth = Gauge(
            "canonlog_append_queue_depth",
            "Appends handed to the writer and not answered yet (queued or in the batch being "
            "committed).", registry=self.registry)
        self.checkpoint_lag_events = Gauge(
            "canonlog_checkpoint_lag_events",
            "Events after the newest published checkpoint (-1 when unknown).", registry=self.registry)
        self.checkpoint_lag_seconds = Gauge(
            "canonlog_checkpoint_lag_seconds",
            "Seconds the oldest event after the newest checkpoint has waited for one, 0 when "
            "every event is covered (-1 when unknown).", registry=self.registry)

    def observe_batch(self, requests: int, events: int) -> None:
        """Records one batch the writer sent to the database."""
        self.batch_requests.observe(requests)
        self.batch_events.observe(events)

    def render(self) -> bytes:
        return generate_latest(self.registry)
