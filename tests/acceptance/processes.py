"""Running writer processes from tests and reading what they report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[2]


@dataclass
class Line:
    kind: str
    fields: list[str]
    seen_at: float


@dataclass
class WriterProcess:
    """A writer_child process whose stdout lines are collected as they arrive."""

    process: subprocess.Popen[str]
    lines: list[Line] = field(default_factory=list)
    reader: threading.Thread | None = None
    error_output: str = ""

    @classmethod
    def start(cls, *, env: dict[str, str] | None = None, **config: object) -> WriterProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.acceptance.writer_child", json.dumps(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        writer = cls(process)
        writer.reader = threading.Thread(target=writer._read, daemon=True)
        writer.reader.start()
        return writer

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            kind, *rest = raw.split()
            self.lines.append(Line(kind, rest, time.monotonic()))

    def of(self, kind: str) -> list[Line]:
        return [line for line in list(self.lines) if line.kind == kind]

    def acked(self) -> dict[int, int]:
        """Execution number -> first sequence, for every acknowledged append."""
        return {int(line.fields[0]): int(line.fields[1]) for line in self.of("ACK")}

    def wait_for(self, kind: str, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < count:
            if self.process.poll() is not None and len(self.of(kind)) < count:
                raise AssertionError(f"writer exited ({self.process.returncode}) before "
                                     f"{count} {kind}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {kind} within {timeout}s: {self.stderr()}")
            time.sleep(0.02)

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def kill(self) -> None:
        """Kills the process if it still runs, then closes its pipes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
        self.stderr()
        if self.reader is not None:
            self.reader.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def stderr(self) -> str:
        """What the process wrote on stderr, once it has exited."""
        if self.process.poll() is not None and self.process.stderr is not None \
                and not self.process.stderr.closed:
            self.error_output += self.process.stderr.read()
        return self.error_output[-2000:]
