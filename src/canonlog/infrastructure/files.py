"""Files canonlog writes outside the database: safe names, and writes that never leave half a file.

Every file canonlog keeps (checkpoint notes, cosignatures, key files, a witness's
state, a writer's last known head) is written through write_file, and every
ledger or key name that becomes part of a path goes through file_name.
"""

from __future__ import annotations

import os
from pathlib import Path


def file_name(name: str) -> str:
    """Escapes a ledger or key name into one safe, reversible file name component.

    Letters, digits, ``-``, ``_`` and a ``.`` that does not lead stay; anything
    else becomes ``%xx`` per UTF-8 byte, so no name can climb out of its directory.
    """
    return "".join(
        c if (c.isascii() and (c.isalnum() or c in "-_" or (c == "." and i > 0)))
        else "".join(f"%{b:02x}" for b in c.encode("utf-8"))
        for i, c in enumerate(name)
    )


def write_file(path: Path, data: bytes, *, mode: int = 0o666, replace: bool = False,
               durable: bool = True) -> None:
    """Writes data to path so that no reader ever sees a partial file.

    Without ``replace`` the file is created exclusively and FileExistsError is raised
    when it exists, so nothing written this way is ever overwritten (a checkpoint
    directory may be a write-once store). With ``replace`` the data goes to a
    temporary file beside it that then takes the name in one rename. ``durable``
    fsyncs the file and its directory before returning, so the file survives a
    power loss once anyone has been told about it. ``mode`` is filtered by the umask.
    """
    if replace:
        temporary = path.with_name(path.name + ".tmp")
        _write_new(temporary, data, mode, durable, exclusive=False)
        os.replace(temporary, path)
    else:
        _write_new(path, data, mode, durable, exclusive=True)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _write_new(path: Path, data: bytes, mode: int, durable: bool, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        if durable:
            os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        path.unlink(missing_ok=True)
        raise
    os.close(descriptor)
