"""The file saga backend: files in one directory, written atomically."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path, PurePosixPath
from typing import Final

from canonlog.application.ports import StepOutcome
from canonlog.domain.errors import BackendRejected, BackendUnavailable
from canonlog.domain.saga import SagaStep
from canonlog.infrastructure.files import write_file

MARKERS: Final = ".canonlog-saga"


class FileBackend:
    """Files under root. ``write`` takes {"path", "content"}: path is relative, inside
    root, and not under .canonlog-saga, where a marker per idempotency key records that
    the step was applied. The file is written through a temporary file and a rename,
    then the marker; a crash between the two rewrites the same bytes on resume."""

    kind = "file"
    operations = frozenset({"write"})

    def __init__(self, root: Path) -> None:
        self._root = root

    def _target(self, step: SagaStep) -> Path:
        raw = step.payload_object().get("path")
        if not isinstance(raw, str) or not raw:
            raise BackendRejected("a file step needs a relative 'path'")
        path = PurePosixPath(raw)
        if path.is_absolute() or ".." in path.parts or path.parts[0] == MARKERS:
            raise BackendRejected(f"path {raw!r} must stay inside the backend's directory")
        return self._root.joinpath(*path.parts)

    def _marker(self, step: SagaStep) -> Path:
        digest = hashlib.sha256(step.idempotency_key.encode("utf-8")).hexdigest()
        return self._root / MARKERS / digest

    async def apply(self, step: SagaStep) -> StepOutcome:
        target, marker = self._target(step), self._marker(step)
        content = step.payload_object().get("content")
        if not isinstance(content, str):
            raise BackendRejected("a file step needs 'content' as a string")
        return await asyncio.to_thread(self._apply, target, marker, content.encode("utf-8"))

    def _apply(self, target: Path, marker: Path, data: bytes) -> StepOutcome:
        relative = target.relative_to(self._root).as_posix()
        try:
            if marker.exists():
                return StepOutcome(applied=False, result={"path": relative})
            target.parent.mkdir(parents=True, exist_ok=True)
            write_file(target, data, replace=True)
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_file(marker, relative.encode("utf-8"), replace=True)
        except OSError as exc:
            raise BackendUnavailable(f"write {relative}: {exc}") from exc
        return StepOutcome(applied=True, result={"path": relative, "bytes": len(data)})

    async def remove(self, step: SagaStep) -> None:
        target = self._target(step)
        try:
            await asyncio.to_thread(target.unlink, missing_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"delete {target.name}: {exc}") from exc
