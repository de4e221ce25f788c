"""Progress for long operations a person runs: a live line on a terminal, sparse lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Callable with the number of items done; pass it as a ProgressCallback."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None,
                 interval: float = 0.2) -> None:
        self._label = label
        self._total = total
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval if self._tty else 5.0
        self._started = time.monotonic()
        self._last = 0.0
        self._done = 0

    def __call__(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._write(final=False)

    def finish(self) -> None:
        self._write(final=True)

    def _write(self, *, final: bool) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self._done / elapsed
        if self._total:
            share = min(self._done / self._total, 1.0)
            bar = "#" * int(share * 30)
            text = (f"{self._label} [{bar:<30}] {self._done}/{self._total} "
                    f"({share:.0%}, {rate:,.0f}/s)")
        else:
            text = f"{self._label} {self._done} ({rate:,.0f}/s)"
        if self._tty:
            self._stream.write("\r" + text + ("\n" if final else ""))
        elif final or self._done:
            self._stream.write(text + "\n")
        self._stream.flush()
