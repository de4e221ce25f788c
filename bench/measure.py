"""What one timed section costs: wall time, latency per call, CPU on both sides, memory."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.server import server_cpu_seconds

_STATUS = Path("/proc/self/status")


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM)."""
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


def reset_peak_rss() -> None:
    """Makes VmHWM start again from the current RSS (Linux 4.0+, proc(5) clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def percentile(sorted_values: list[float], share: float) -> float:
    """The nearest-rank percentile of values already sorted ascending."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(share * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of one system in one workload."""

    events: int
    calls: int
    seconds: float
    events_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    client_cpu_us_per_event: float
    server_cpu_us_per_event: float | None
    peak_rss_mb: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Stopwatch:
    """Brackets a timed section: wall clock, this process's CPU and the server's CPU."""

    def __init__(self, postmaster_pid: int | None) -> None:
        self._pid = postmaster_pid
        self._wall = 0.0
        self._cpu = 0.0
        self._server: float | None = None
        self.seconds = 0.0
        self.client_cpu = 0.0
        self.server_cpu: float | None = None

    def start(self) -> None:
        reset_peak_rss()
        self._server = server_cpu_seconds(self._pid)
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.client_cpu = time.process_time() - self._cpu
        after = server_cpu_seconds(self._pid)
        self.server_cpu = None if after is None or self._server is None else after - self._server

    def measurement(self, events: int, latencies: list[float]) -> Measurement:
        """Turns the bracketed section into figures; latencies are seconds per call
        (none for a section that is one long call, such as a verification)."""
        latencies.sort()
        seconds = max(self.seconds, 1e-9)

        def ms(share: float) -> float | None:
            return round(percentile(latencies, share) * 1000, 3) if latencies else None

        return Measurement(
            events=events,
            calls=len(latencies),
            seconds=round(seconds, 4),
            events_per_s=round(events / seconds, 1),
            p50_ms=ms(0.50),
            p95_ms=ms(0.95),
            p99_ms=ms(0.99),
            client_cpu_us_per_event=round(self.client_cpu / max(events, 1) * 1e6, 2),
            server_cpu_us_per_event=(None if self.server_cpu is None
                                     else round(self.server_cpu / max(events, 1) * 1e6, 2)),
            peak_rss_mb=round(rss_bytes("VmHWM") / 2**20, 1),
        )
