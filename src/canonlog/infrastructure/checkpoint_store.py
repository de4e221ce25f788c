"""Checkpoints in directories, and a witness's state file.

Layout of a checkpoint directory (which may be a mounted write-once store)::

    <dir>/<ledger>/00000000000000001200.checkpoint               the signed note
    <dir>/<ledger>/00000000000000001200.<witness>.cosignature    one witness's line

Ledger and witness names are escaped to file names (``%xx`` for anything but
letters, digits, ``-``, ``_`` and a ``.`` that does not lead).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from pathlib import Path

from canonlog.application.ports import StoredCheckpoint, StoredCosignature
from canonlog.domain.checkpoint import EM_DASH, check_key_name
from canonlog.domain.errors import CheckpointConflict, CheckpointFormatError
from canonlog.domain.events import Head
from canonlog.infrastructure.files import file_name, write_file

_CHECKPOINT = re.compile(r"([0-9]{20})\.checkpoint")
_MAX_NOTE_BYTES = 64 * 1024
_MAX_COSIGNATURE_BYTES = 4 * 1024


def _read_regular_file(path: Path, limit: int) -> bytes:
    """The content of path when it is a regular file of at most limit bytes.

    Opened without blocking (a FIFO or a device never stalls the reader) and checked
    on the open descriptor, so a file swapped in between cannot slip past; raises
    FileNotFoundError when nothing is there and CheckpointFormatError, naming what it
    is, otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CheckpointFormatError(f"it cannot be opened: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device, socket or other special file")
            raise CheckpointFormatError(f"it is {kind}, not a regular file")
        size = os.fstat(fd).st_size
        if size > limit:
            raise CheckpointFormatError(f"it is {size} bytes; at most {limit} are read")
        with os.fdopen(os.dup(fd), "rb") as source:
            content = source.read(limit + 1)
    except OSError as exc:
        raise CheckpointFormatError(f"it cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(content) > limit:
        raise CheckpointFormatError(f"it is more than {limit} bytes")
    return content


class DirectoryCheckpointStore:
    """A CheckpointStore in a local (or mounted) directory: one write-once file per note."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def __repr__(self) -> str:
        return f"DirectoryCheckpointStore({str(self._directory)!r})"

    def path(self, ledger_id: str, sequence: int) -> Path:
        return self._directory / file_name(ledger_id) / f"{sequence:020d}.checkpoint"

    async def publish(self, ledger_id: str, sequence: int, note: bytes) -> str:
        return await asyncio.to_thread(self._publish, ledger_id, sequence, note)

    def _publish(self, ledger_id: str, sequence: int, note: bytes) -> str:
        path = self.path(ledger_id, sequence)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_file(path, note, mode=0o444)
        except FileExistsError:
            raise CheckpointConflict(f"{path} already exists; published checkpoints are never "
                                     f"replaced") from None
        return str(path)

    async def load(self, ledger_id: str, sequence: int) -> StoredCheckpoint | None:
        return await asyncio.to_thread(self._load, self.path(ledger_id, sequence))

    def _load(self, path: Path) -> StoredCheckpoint | None:
        match = _CHECKPOINT.fullmatch(path.name)
        sequence = int(match.group(1)) if match else None
        try:
            note = _read_regular_file(path, _MAX_NOTE_BYTES)
        except FileNotFoundError:
            return None
        except CheckpointFormatError as exc:
            return StoredCheckpoint(str(path), sequence, b"", unreadable=str(exc))
        return StoredCheckpoint(str(path), sequence, note, self._cosignatures(path))

    @staticmethod
    def _cosignatures(path: Path) -> tuple[StoredCosignature, ...]:
        prefix = path.name.removesuffix(".checkpoint") + "."
        found: list[StoredCosignature] = []
        for cosignature in sorted(path.parent.glob(f"{prefix}*.cosignature")):
            try:
                content = _read_regular_file(cosignature, _MAX_COSIGNATURE_BYTES)
            except FileNotFoundError:
                continue
            except CheckpointFormatError as exc:
                found.append(StoredCosignature(str(cosignature), b"", str(exc)))
                continue
            found.append(StoredCosignature(str(cosignature), content))
        return tuple(found)

    async def list_checkpoints(self, ledger_id: str) -> list[StoredCheckpoint]:
        return await asyncio.to_thread(self._list, ledger_id)

    def _list(self, ledger_id: str) -> list[StoredCheckpoint]:
        directory = self._directory / file_name(ledger_id)
        try:
            paths = [p for p in directory.iterdir() if p.name.endswith(".checkpoint")]
        except (FileNotFoundError, NotADirectoryError):
            return []
        stored = [s for s in (self._load(p) for p in paths) if s is not None]
        stored.sort(key=lambda s: (s.sequence is not None, s.sequence or 0, s.location),
                    reverse=True)
        return stored

    async def add_cosignature(self, ledger_id: str, sequence: int, key_name: str,
                              signature_line: bytes) -> bool:
        return await asyncio.to_thread(self._add_cosignature, ledger_id, sequence, key_name,
                                       signature_line)

    def _add_cosignature(self, ledger_id: str, sequence: int, key_name: str,
                         signature_line: bytes) -> bool:
        check_key_name(key_name)
        expected = f"{EM_DASH} {key_name} ".encode()
        if not signature_line.startswith(expected) or signature_line.count(b"\n") != 1 \
                or not signature_line.endswith(b"\n"):
            raise CheckpointFormatError(f"not one signature line of {key_name}: {signature_line!r}")
        checkpoint = self.path(ledger_id, sequence)
        if not checkpoint.exists():
            raise CheckpointConflict(f"there is no checkpoint #{sequence} of {ledger_id} to "
                                     f"cosign in {checkpoint.parent}")
        path = checkpoint.with_name(f"{sequence:020d}.{file_name(key_name)}.cosignature")
        try:
            write_file(path, signature_line, mode=0o444)
        except FileExistsError:
            return False
        return True


class FileWitnessState:
    """A witness's WitnessState: one JSON file of origin -> sequence and hash, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self._path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            # An unreadable state must not reset the witness to "seen nothing".
            raise CheckpointFormatError(f"witness state {self._path} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointFormatError(f"witness state {self._path} is not a JSON object")
        return data

    def last_cosigned(self, origin: str) -> Head | None:
        entry = self._read().get(origin)
        if entry is None:
            return None
        try:
            return Head(str(entry["ledger_id"]), int(str(entry["sequence"])),
                        bytes.fromhex(str(entry["hash"])))
        except (KeyError, ValueError) as exc:
            raise CheckpointFormatError(
                f"witness state {self._path} has a bad entry for {origin}: {exc}") from exc

    def record(self, origin: str, head: Head) -> None:
        data = self._read()
        data[origin] = {"ledger_id": head.ledger_id, "sequence": head.sequence,
                        "hash": head.hash.hex()}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_file(self._path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"),
                   replace=True)
