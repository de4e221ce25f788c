"""Error translation: a database error, by SQLSTATE, becomes the canonlog error for it.

Each driver calls translate_error at its one choke point, with what the server
reported (sqlstate, message, detail), and raises the result ``from`` the driver's
exception.
"""

from __future__ import annotations

from canonlog.domain.errors import (
    ERRORS_BY_SQLSTATE,
    CanonlogError,
    InvalidEvent,
    StorageError,
    SystemHalted,
)

#: SQLSTATEs of malformed input that PostgreSQL itself raises inside the append
#: path: invalid byte sequence, untranslatable character (U+0000 in JSON),
#: invalid text representation (JSON), string too long, check violation,
#: invalid parameter value.
_INPUT_SQLSTATES = frozenset({"22021", "22P05", "22P02", "22001", "23514", "22023"})


def translate_error(sqlstate: str | None, message: str, detail: str | None) -> CanonlogError:
    """Maps a database error to the canonlog error for the same condition."""
    text = message.removeprefix("canonlog: ")
    if sqlstate == "CL012":
        return SystemHalted(text, reason=detail)
    error_type = ERRORS_BY_SQLSTATE.get(sqlstate or "")
    if error_type is not None:
        return error_type(text)
    if sqlstate in _INPUT_SQLSTATES:
        return InvalidEvent(f"the database refused the input: {text}")
    return StorageError(f"{sqlstate}: {text}" if sqlstate else text)


def connection_failed(exc: BaseException) -> StorageError:
    """The error for a call that never got an answer from the server."""
    return StorageError(f"PostgreSQL connection failed: {type(exc).__name__}: {exc}")
