"""Where a writer keeps its last known head, outside the database."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from canonlog.domain.events import Head
from canonlog.infrastructure.files import file_name, write_file

logger = structlog.get_logger(__name__)


class FileHeadStore:
    """One small JSON file per ledger, replaced atomically (write, then rename).

    Nothing is fsynced: heads are saved often, and after a power loss the file may
    hold an older head, which only makes the startup comparison less strict, never
    wrong.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, ledger_id: str) -> Path:
        return self._directory / f"{file_name(ledger_id)}.head.json"

    def load(self, ledger_id: str) -> Head | None:
        path = self._path(ledger_id)
        try:
            data = json.loads(path.read_text("utf-8"))
            return Head(data["ledger_id"], int(data["sequence"]), bytes.fromhex(data["hash"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("last known head unreadable; ignoring it", path=str(path), error=str(exc))
            return None

    def save(self, head: Head) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"ledger_id": head.ledger_id, "sequence": head.sequence,
                           "hash": head.hash.hex()})
        write_file(self._path(head.ledger_id), data.encode("utf-8"), replace=True, durable=False)


class MemoryHeadStore:
    """Heads kept in a dict, for in-process use and tests."""

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}

    def load(self, ledger_id: str) -> Head | None:
        return self._heads.get(ledger_id)

    def save(self, head: Head) -> None:
        self._heads[head.ledger_id] = head
