"""`canonlog saga ...`: create, execute, resume, abort, compensate, show and list sagas,
and the recovery worker.

show and list read the chain without writing. The others append, so they run the
ledger's writer and need its lease: run them where no other writer (such as
`canonlog serve`) holds it, or use the service's HTTP endpoints instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from canonlog.application.saga_recovery import SagaIndex, SagaRecoveryWorker, read_saga
from canonlog.application.sagas import SagaOrchestrator
from canonlog.domain.canonical import parse_json
from canonlog.domain.errors import InvalidEvent, InvalidSaga
from canonlog.domain.saga import SagaState, SagaStatus
from canonlog.infrastructure.bootstrap import open_ledger, open_sagas
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    add_command,
    add_group,
    ledger_log,
    render,
)
from canonlog.infrastructure.sagas.views import history_json, history_lines, saga_json
from canonlog.infrastructure.settings import Settings


@asynccontextmanager
async def _orchestrator(settings: Settings) -> AsyncIterator[SagaOrchestrator]:
    async with open_ledger(settings) as client, open_sagas(settings, client) as sagas:
        yield sagas


def _summary(state: SagaState) -> str:
    reasons = f" ({'; '.join(state.reasons)})" if state.reasons else ""
    return f"{state.saga_id} {state.name} {state.status.value}{reasons}"


def _show_state(args: argparse.Namespace, state: SagaState) -> int:
    return render(args, saga_json(state), _summary(state))


def _read_steps(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        return parse_json(text, "steps")
    except InvalidEvent as exc:
        raise InvalidSaga(str(exc)) from exc


async def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    steps = _read_steps(args.steps)
    async with _orchestrator(settings) as sagas:
        saga_id = await sagas.create_saga(args.name, steps, trace_id=args.trace_id)
        if args.execute:
            return _show_state(args, await sagas.execute_saga(saga_id))
    return render(args, {"saga_id": saga_id}, saga_id)


async def cmd_execute(settings: Settings, args: argparse.Namespace) -> int:
    async with _orchestrator(settings) as sagas:
        return _show_state(args, await sagas.execute_saga(args.saga_id))


async def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    async with _orchestrator(settings) as sagas:
        return _show_state(args, await sagas.resume_saga(args.saga_id))


async def cmd_abort(settings: Settings, args: argparse.Namespace) -> int:
    async with _orchestrator(settings) as sagas:
        return _show_state(args, await sagas.abort_saga(args.saga_id, args.reason))


async def cmd_compensate(settings: Settings, args: argparse.Namespace) -> int:
    async with _orchestrator(settings) as sagas:
        return _show_state(args, await sagas.compensate_saga(args.saga_id, args.reason))


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args) as (log, ledger):
        state, events = await read_saga(log, ledger, args.saga_id)
    return render(args, {"saga": saga_json(state), "history": history_json(events)},
                  _summary(state) + "\n" + history_lines(events))


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args) as (log, ledger):
        index = SagaIndex(log, ledger)
        await index.refresh()
    found = index.sagas(SagaStatus(args.state) if args.state else None)
    return render(args, [saga_json(s) for s in found], "\n".join(_summary(s) for s in found))


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    async with open_ledger(settings) as client, open_sagas(settings, client) as sagas:
        worker = SagaRecoveryWorker(sagas, SagaIndex(client.event_log, client.ledger_id),
                                    stale_after=settings.saga_stale_after,
                                    interval=settings.saga_worker_interval)
        if args.once:
            report = await worker.run_once()
            return render(args, vars(report), f"resumed {report.resumed}, busy {report.busy}, "
                                              f"failed {report.failed}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)
    return EXIT_OK


def register(sub: Any) -> None:
    """Adds the `saga` group to the `canonlog` parser."""
    group = add_group(sub, "saga", "sagas across stores, every step in the chain")
    p = add_command(group, "create", cmd_create, "record a saga from a JSON list of steps")
    p.add_argument("name")
    p.add_argument("--steps", required=True, help="file of the steps as JSON, or - for stdin")
    p.add_argument("--trace-id")
    p.add_argument("--execute", action="store_true", help="run it at once")
    for name, handler, text in (("execute", cmd_execute, "run a created saga to its end"),
                                ("resume", cmd_resume, "drive an unfinished saga on"),
                                ("show", cmd_show, "a saga's state and its history from the chain")):
        add_command(group, name, handler, text).add_argument("saga_id")
    for name, handler, text in (("abort", cmd_abort, "stop a saga and compensate what ran"),
                                ("compensate", cmd_compensate, "undo a saga in reverse order")):
        p = add_command(group, name, handler, text)
        p.add_argument("saga_id")
        p.add_argument("--reason", default="requested")
    p = add_command(group, "list", cmd_list, "sagas, optionally only those in one state")
    p.add_argument("--state", choices=[s.value for s in SagaStatus])
    p = add_command(group, "worker", cmd_worker,
                    "resume sagas left unfinished (CANONLOG_SAGA_STALE_AFTER), as a daemon")
    p.add_argument("--once", action="store_true", help="one pass, then exit")


__all__ = ["register"]
