"""Verification on every core: ranges of a ledger checked in parallel processes.

The ledger (rows in PostgreSQL, or the lines of an export) is cut into ranges;
each process checks its ranges alone (canonlog.application.range_verification)
and the ranges are joined in sequence order at the end. Rows are streamed with
COPY in binary format into plain tuples, and export lines are parsed into the
same tuples, so nothing builds a full event object it does not need.

A process that dies, or fails in a way canonlog does not classify, makes the
whole verification fail with VerificationIncomplete: a range nobody checked is
never taken as verified. With one process the same ranges are checked in this
process, in order, so the two can be compared in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Final, TypeVar

import psycopg
from psycopg import sql

from canonlog.application.chain_verification import verify_chain
from canonlog.application.ports import EventReader, ProgressCallback
from canonlog.application.range_verification import (
    RangeResult,
    check_range,
    join_ranges,
    with_later_breaks,
)
from canonlog.application.stored_governance import compare_stored_governance
from canonlog.application.verifier import ChainReport, SignaturePolicy, VerifiableEvent
from canonlog.domain.errors import (
    CanonlogError,
    ExportFormatError,
    StorageError,
    VerificationIncomplete,
)
from canonlog.domain.events import GENESIS_HASH, SYSTEM_STREAM, Head
from canonlog.infrastructure.export import ExportedEvent, exported_event
from canonlog.infrastructure.postgres.queries import load_queries

T = TypeVar("T")
R = TypeVar("R")

#: Events per range read from the database, bytes per range of an export: small
#: enough for progress and for an even share between processes, large enough that
#: a range's start-up (a connection, a process hand-over) does not count.
DB_RANGE_EVENTS: Final = 25_000
EXPORT_RANGE_BYTES: Final = 8 << 20
_QUERIES: Final = load_queries("canonlog.infrastructure.postgres", "range_queries.sql")
#: The COPY types of the copy_range columns, in order.
_COLUMN_TYPES: Final = ("text", "int8", "uuid", "text", "int8", "text", "bytea", "bytea", "text",
                        "text", "text", "text", "text", "text", "int8", "timestamptz",
                        "timestamptz", "int2", "bytea", "bytea", "text", "bytea")
_SYSTEM_MARK: Final = f'"{SYSTEM_STREAM}"'.encode()


def default_processes() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_ranges(job: Callable[[T], R], tasks: Sequence[T], processes: int,
               done: Callable[[R], None] | None = None) -> list[R]:
    """Runs job over every task, in up to processes processes; returns the results in task
    order, calling done with each as it completes.

    Raises the first failing task's CanonlogError as it is, and VerificationIncomplete
    when a process died or a task failed otherwise.
    """
    if processes <= 1 or len(tasks) <= 1:
        return _in_this_process(job, tasks, done)
    with _pool(processes, len(tasks)) as pool:
        futures = [pool.submit(job, task) for task in tasks]
        for future in as_completed(futures):
            if done is not None and future.exception() is None:
                done(future.result())
        return [_result(future, index) for index, future in enumerate(futures)]


async def run_ranges_async(job: Callable[[T], R], tasks: Sequence[T], processes: int,
                           done: Callable[[R], None] | None = None) -> list[R]:
    """run_ranges for a caller on an event loop: the processes start from the loop's thread
    and their results are awaited, not waited for."""
    if processes <= 1 or len(tasks) <= 1:
        return _in_this_process(job, tasks, done)
    with _pool(processes, len(tasks)) as pool:
        futures = [pool.submit(job, task) for task in tasks]
        for waited in asyncio.as_completed([asyncio.wrap_future(f) for f in futures]):
            with contextlib.suppress(Exception):
                result = await waited
                if done is not None:
                    done(result)
        return [_result(future, index) for index, future in enumerate(futures)]


def _in_this_process(job: Callable[[T], R], tasks: Sequence[T],
                     done: Callable[[R], None] | None) -> list[R]:
    results = []
    for task in tasks:
        results.append(job(task))
        if done is not None:
            done(results[-1])
    return results


def _pool(processes: int, tasks: int) -> ProcessPoolExecutor:
    """A pool of processes forked from this one when it runs a single thread (they start
    at once, with everything imported), else from a fork server, which forking a process
    with threads in it could deadlock."""
    context: BaseContext
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_preload())
    return ProcessPoolExecutor(min(processes, tasks), mp_context=context)


def _preload() -> list[str]:
    """What the server the processes fork from imports once: this module and the main
    module (run as a path or with -m), which each process would otherwise import anew
    as it starts (multiprocessing's spawn preparation)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return ["__main__", __name__, *([spec.name] if spec is not None and spec.name else [])]


def _result(future: Future[R], index: int) -> R:
    try:
        return future.result()
    except CanonlogError:
        raise
    except BrokenProcessPool as exc:
        raise VerificationIncomplete(f"a verification process died before range {index + 1} "
                                     "was checked; nothing is verified") from exc
    except Exception as exc:
        raise VerificationIncomplete(f"range {index + 1} could not be checked: "
                                     f"{type(exc).__name__}: {exc}") from exc


# -- the database -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DbRange:
    conninfo: str
    ledger_id: str
    low: int
    high: int
    start: Head
    before: tuple[VerifiableEvent, ...]
    signatures: SignaturePolicy


def read_rows(conninfo: str, ledger_id: str, low: int, high: int) -> Iterator[ExportedEvent]:
    """The ledger's events after low up to high, streamed by COPY in binary format."""
    query = sql.SQL(_QUERIES["copy_range"]).format(
        ledger=sql.Literal(ledger_id), low=sql.Literal(low), high=sql.Literal(high))
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cursor, \
                cursor.copy(query) as copy:
            copy.set_types(list(_COLUMN_TYPES))
            make = ExportedEvent._make
            for row in copy.rows():
                yield make(row)
    except psycopg.Error as exc:
        raise StorageError(f"reading events {low + 1}..{high} failed: {exc}") from None


def _check_db_range(task: _DbRange) -> RangeResult:
    return check_range(read_rows(task.conninfo, task.ledger_id, task.low, task.high),
                       task.ledger_id, start=task.start, before=task.before,
                       signatures=task.signatures)


class ParallelChainChecker:
    """A ChainChecker over PostgreSQL: ranges of DB_RANGE_EVENTS events checked in up to
    processes processes, each reading its rows over its own connection (conninfo)."""

    def __init__(self, conninfo: str, processes: int, *,
                 range_events: int = DB_RANGE_EVENTS) -> None:
        self._conninfo = conninfo
        self.processes = max(1, processes)
        self._range_events = range_events

    async def verify_chain(self, reader: EventReader, ledger_id: str, *, after: Head,
                           until: int | None, signatures: SignaturePolicy,
                           progress: ProgressCallback | None) -> ChainReport:
        head = (await reader.head(ledger_id)).sequence
        end = head if until is None else min(until, head)
        system = tuple(e for e in await reader.read_stream(ledger_id, SYSTEM_STREAM)
                       if e.sequence <= end)
        tasks = [_DbRange(self._conninfo, ledger_id, low, min(low + self._range_events, end),
                          after, tuple(e for e in system if e.sequence <= low), signatures)
                 for low in range(after.sequence, end, self._range_events)]
        results = await run_ranges_async(_check_db_range, tasks, self.processes,
                                         _counter(progress))
        seen = [(e.sequence, e.hash) for r in results for e in r.system_events]
        if seen != [(e.sequence, e.hash) for e in system if e.sequence > after.sequence]:
            # The ledger's own events changed between the two reads: check it in one
            # pass, which needs no separate read of them.
            return await verify_chain(reader, ledger_id, after=after, until=end,
                                      signatures=signatures, progress=progress)
        report, governance = join_ranges(
            results, ledger_id, start=after, signatures=signatures,
            before=[e for e in system if e.sequence <= after.sequence])
        if signatures != "ignore":
            await compare_stored_governance(governance, reader, ledger_id,
                                            to_head=until is None)
        return with_later_breaks(report, governance)


def _counter(progress: ProgressCallback | None) -> Callable[[RangeResult], None] | None:
    if progress is None:
        return None
    total = 0

    def done(result: RangeResult) -> None:
        nonlocal total
        total += result.checked
        progress(total)
    return done


# -- an export --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ExportRange:
    path: str
    offset: int
    end: int
    ledger_id: str
    before: tuple[VerifiableEvent, ...]
    signatures: SignaturePolicy
    watch: frozenset[int]


def _export_lines(path: str, offset: int, end: int, first_line: int) -> Iterator[ExportedEvent]:
    with open(path, "rb") as source:
        source.seek(offset)
        data = source.read(end - offset)
    for number, line in enumerate(data.split(b"\n"), first_line):
        if line.strip():
            yield exported_event(line, number)


def _check_export_range(task: _ExportRange) -> RangeResult:
    """Checks one range; a malformed line is named by its line number in the export, which
    is counted only then (counting every range's lines first would be a pass over the
    whole file before any check starts)."""
    try:
        return _check_lines(task, first_line=1)
    except ExportFormatError:
        if task.offset == 0:
            raise
        return _check_lines(task, first_line=_lines_before(task.path, task.offset) + 1)


def _check_lines(task: _ExportRange, *, first_line: int) -> RangeResult:
    return check_range(_export_lines(task.path, task.offset, task.end, first_line),
                       task.ledger_id, start=Head(task.ledger_id, 0, GENESIS_HASH),
                       before=task.before, signatures=task.signatures, watch=task.watch)


def _lines_before(path: str, offset: int) -> int:
    with open(path, "rb") as source:
        return source.read(offset).count(b"\n")


def verify_export_file(path: Path, ledger_id: str, *, processes: int,
                       signatures: SignaturePolicy = "check", watch: frozenset[int] = frozenset(),
                       progress: ProgressCallback | None = None,
                       range_bytes: int = EXPORT_RANGE_BYTES) -> tuple[ChainReport, dict[int, bytes]]:
    """Verifies an export from genesis in up to processes processes; returns the chain's
    report and the export's hash at each watched sequence it holds.

    Raises ExportFormatError for the first malformed line, as a single pass would.
    """
    with open(path, "rb") as source, mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        bounds = _ranges(mm, range_bytes)
        system = _system_events(mm)
    tasks = [_ExportRange(str(path), low, high, ledger_id,
                          tuple(e for at, e in system if at < low), signatures, watch)
             for low, high in bounds]
    results = run_ranges(_check_export_range, tasks, processes, _counter(progress))
    seen = [(e.sequence, e.hash) for r in results for e in r.system_events]
    if seen != [(e.sequence, e.hash) for _, e in system]:
        # A ledger event the quick scan did not find (written unusually): one pass, which
        # learns every key in order by itself.
        whole = _ExportRange(str(path), 0, path.stat().st_size, ledger_id, (), signatures, watch)
        results = run_ranges(_check_export_range, [whole], 1)
    report, governance = join_ranges(results, ledger_id, start=Head(ledger_id, 0, GENESIS_HASH),
                                     signatures=signatures)
    hashes = {sequence: digest for r in results for sequence, digest in r.watched.items()}
    return with_later_breaks(report, governance), hashes


def _ranges(mm: mmap.mmap, range_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges that end at line ends."""
    size = len(mm)
    bounds: list[tuple[int, int]] = []
    low = 0
    while low < size:
        newline = mm.find(b"\n", min(low + range_bytes, size - 1))
        high = size if newline < 0 else newline + 1
        bounds.append((low, high))
        low = high
    return bounds


def _system_events(mm: mmap.mmap) -> list[tuple[int, ExportedEvent]]:
    """The ledger's own events of an export with their byte offsets, found by a quick scan
    for the stream's name; lines that do not parse are left to the range that holds them."""
    found: list[tuple[int, ExportedEvent]] = []
    at = mm.find(_SYSTEM_MARK)
    while at >= 0:
        start = mm.rfind(b"\n", 0, at) + 1
        end = mm.find(b"\n", at)
        end = len(mm) if end < 0 else end
        try:
            event = exported_event(mm[start:end])
        except CanonlogError:
            event = None
        if event is not None and event.stream_id == SYSTEM_STREAM:
            found.append((start, event))
        at = mm.find(_SYSTEM_MARK, end)
    return found
