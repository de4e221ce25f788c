"""What the acceptance tests of signed checkpoints share: a checkpoint directory, the
ledger's checkpoint key, and the `canonlog` command set up to trust only its public half."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from canonlog.infrastructure.keyfiles import generate_key_file
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.support.cli import Cli, Result

ORIGIN = "canonlog/main"
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "checkpoint.key"
    return path, generate_key_file(path).hex()


@pytest.fixture
def cli(database, tmp_path, checkpoint_dir, key_file) -> Cli:
    """Publishes with the private key; verifies trusting only its public key, as set up."""
    public = key_file[1]
    return Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"),
        "CANONLOG_CHECKPOINT_DIR": str(checkpoint_dir),
        "CANONLOG_CHECKPOINT_PUBLIC_KEYS": f"{ORIGIN}={public}",
    })


async def publish(cli: Cli, key_file: tuple[Path, str]) -> Result:
    return await cli.ok("checkpoint", "publish",
                        env={"CANONLOG_CHECKPOINT_KEY_FILE": str(key_file[0])})


async def hash_at(dsn: str, sequence: int) -> bytes:
    log = await AsyncpgEventLog.connect(dsn, max_size=1)
    try:
        (event,) = await log.read_all("main", after=sequence - 1, limit=1)
        return event.hash
    finally:
        await log.close()
