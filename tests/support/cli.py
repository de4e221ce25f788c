"""Running the real `canonlog` command as a subprocess, the way an operator does."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]


@dataclass
class Result:
    """What one run of the command left: its exit code and its output."""

    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs `python -m canonlog --dsn ... --admin-dsn ... [--operator-dsn ...]`; of the
    CANONLOG_* variables
    only those in env reach it, so the test's own environment cannot change a run."""

    def __init__(self, dsn: str, admin_dsn: str, env: dict[str, str] | None = None,
                 operator_dsn: str | None = None) -> None:
        self.dsn, self.admin_dsn, self.operator_dsn = dsn, admin_dsn, operator_dsn
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CANONLOG_")}
        self.env |= env or {}

    def on(self, dsn: str, admin_dsn: str) -> Cli:
        """The same command and environment against another database."""
        other = Cli(dsn, admin_dsn)
        other.env = self.env
        return other

    async def __call__(self, *args: str, stdin: str | None = None,
                       env: dict[str, str] | None = None, drop_env: tuple[str, ...] = ()
                       ) -> Result:
        """Runs the command with args, env added and drop_env removed; stdin is empty unless given."""
        environment = {k: v for k, v in (self.env | (env or {})).items() if k not in drop_env}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "canonlog", "--dsn", self.dsn, "--admin-dsn", self.admin_dsn,
            *(("--operator-dsn", self.operator_dsn) if self.operator_dsn else ()), *args,
            cwd=ROOT, env=environment, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate((stdin or "").encode())
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, **kwargs: Any) -> Result:
        """Runs the command and asserts that it exited 0."""
        result = await self(*args, **kwargs)
        assert result.code == 0, (args, result)
        return result
