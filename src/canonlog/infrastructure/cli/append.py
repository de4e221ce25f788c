"""`canonlog append`: events from arguments or JSON Lines on stdin, through the writer.

The events go through open_ledger, like an application's: the writer verifies
the database, takes the grant as CANONLOG_WRITER_ID (or --writer-id), batches
and stops afterwards. Each stdin line is one event and its own atomic append.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.client import LedgerClient
from canonlog.domain.canonical import parse_json
from canonlog.domain.errors import CanonlogError, InvalidEvent
from canonlog.domain.events import ExpectedVersion, NewEvent, RecordedEvent, StreamState, WriteContext
from canonlog.domain.signing import sign_event
from canonlog.infrastructure.bootstrap import open_ledger
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_REFUSED,
    add_command,
    print_json,
    usage_error,
)
from canonlog.infrastructure.keyfiles import load_private_key
from canonlog.infrastructure.settings import Settings

#: Stdin lines appended concurrently through the writer, so that they share batches.
_STDIN_CHUNK = 500

#: An agent's private key and its registered key id, to sign events with.
_Signer = tuple[Ed25519PrivateKey, str]


def expected_version(text: str) -> ExpectedVersion:
    """Parses --expected-version: a version >= 1, any, no_stream or stream_exists."""
    try:
        return StreamState(text)
    except ValueError:
        pass
    try:
        version = int(text)
    except ValueError:
        version = 0
    if version < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a version >= 1, any, no_stream or stream_exists")
    return version


@dataclass(frozen=True, slots=True)
class _Submission:
    """One event to append, with where it came from (a stdin line number, or 0)."""

    line: int
    stream_id: str
    event: NewEvent
    expected: ExpectedVersion
    context: WriteContext


def _submission(line: int, data: dict[str, Any], signer: _Signer | None,
                ledger: str) -> _Submission:
    if not isinstance(data, dict):
        raise InvalidEvent("a line must be a JSON object")
    unknown = set(data) - {"stream", "type", "payload", "metadata", "expected_version",
                           "event_id", "execution_id", "task_id", "correlation_id",
                           "causation_id", "agent_id", "signing_key_id", "signature"}
    if unknown:
        raise InvalidEvent(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("stream", "type", "payload"):
        if name not in data:
            raise InvalidEvent(f"the {name!r} field is missing")
    if not isinstance(data["stream"], str):
        raise InvalidEvent("stream must be a string")
    try:
        expected = expected_version(str(data.get("expected_version", "any")))
        event_id = uuid.UUID(data["event_id"]) if data.get("event_id") else None
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise InvalidEvent(str(exc)) from exc
    event = NewEvent.create(data["type"], data["payload"], data.get("metadata"),
                            event_id=event_id)
    context = WriteContext(**{name: data.get(name) for name in (
        "task_id", "execution_id", "correlation_id", "causation_id", "agent_id")})
    if data.get("signature") is not None or data.get("signing_key_id") is not None:
        try:
            signature = bytes.fromhex(str(data.get("signature")))
        except ValueError as exc:
            raise InvalidEvent(f"signature is not hex: {exc}") from exc
        event = NewEvent(event.event_type, event.payload, event.metadata, event.event_id,
                         data.get("signing_key_id"), signature)
    elif signer is not None:
        event = sign_event(event, private_key=signer[0], signing_key_id=signer[1],
                           ledger_id=ledger, stream_id=data["stream"], context=context)
    return _Submission(line, data["stream"], event, expected, context)


def _argument_submission(args: argparse.Namespace, signer: _Signer | None,
                         ledger: str) -> _Submission:
    payload = parse_json(args.payload, "--payload")
    metadata = parse_json(args.metadata, "--metadata") if args.metadata else None
    data = {"stream": args.stream, "type": args.type, "payload": payload, "metadata": metadata,
            "expected_version": args.expected_version.value
            if isinstance(args.expected_version, StreamState) else args.expected_version,
            "event_id": args.event_id, "execution_id": args.execution_id,
            "task_id": args.task_id, "correlation_id": args.correlation_id,
            "causation_id": args.causation_id, "agent_id": args.agent_id}
    return _submission(0, {k: v for k, v in data.items() if v is not None}, signer, ledger)


def _stdin_lines(stream: TextIO) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for number, text in enumerate(stream, 1):
        if text.strip():
            chunk.append((number, text))
        if len(chunk) >= _STDIN_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _event_json(event: RecordedEvent) -> dict[str, Any]:
    return {"sequence": event.sequence, "event_id": str(event.event_id),
            "stream_id": event.stream_id, "stream_version": event.stream_version,
            "event_type": event.event_type, "hash": event.hash.hex(),
            "signing_key_id": event.signing_key_id}


async def _submit(client: LedgerClient, item: _Submission) -> list[RecordedEvent]:
    c = item.context
    result = await client.append(
        item.stream_id, [item.event], expected_version=item.expected,
        execution_id=c.execution_id, task_id=c.task_id, correlation_id=c.correlation_id,
        causation_id=c.causation_id, agent_id=c.agent_id)
    return list(result.events)


def _check_options(args: argparse.Namespace) -> None:
    if (args.key is None) != (args.key_id is None):
        raise usage_error("--key and --key-id go together")
    if args.stream is None and (args.type or args.payload):
        raise usage_error("--type and --payload need --stream; without it, events are read "
                          "from stdin as JSON Lines")
    if args.stream is not None and not (args.type and args.payload):
        raise usage_error("--stream needs --type and --payload")


def _parse(args: argparse.Namespace, chunk: list[tuple[int, str]], signer: _Signer | None,
           ledger: str) -> list[_Submission | CanonlogError]:
    """The chunk's submissions, in line order, each a _Submission or the reason it is invalid."""
    submissions: list[_Submission | CanonlogError] = []
    for number, text in chunk:
        try:
            submissions.append(_argument_submission(args, signer, ledger)
                               if args.stream is not None else
                               _submission(number, parse_json(text, f"line {number}"), signer, ledger))
        except ValueError as exc:  # InvalidEvent and JSON errors
            submissions.append(InvalidEvent(str(exc)))
    return submissions


async def _append_all(client: LedgerClient, valid: list[_Submission]
                      ) -> list[list[RecordedEvent] | BaseException]:
    """Appends each submission as its own request; returns what each got, in order."""
    if not any(s.event.signature is not None for s in valid):
        # Queued in line order; concurrent callers share the writer's batches.
        return await asyncio.gather(*(_submit(client, s) for s in valid), return_exceptions=True)
    # The client checks a signature (a read) before queueing its event, so
    # concurrent submissions could reach the writer out of line order.
    outcomes: list[list[RecordedEvent] | BaseException] = []
    for s in valid:
        try:
            outcomes.append(await _submit(client, s))
        except CanonlogError as exc:
            outcomes.append(exc)
    return outcomes


async def cmd_append(settings: Settings, args: argparse.Namespace) -> int:
    if args.writer_id:
        settings = settings.model_copy(update={"writer_id": args.writer_id})
    if args.ledger:
        settings = settings.model_copy(update={"ledger": args.ledger})
    _check_options(args)
    signer = (load_private_key(Path(args.key)), args.key_id) if args.key else None
    if args.stream is not None:
        chunks: Iterator[list[tuple[int, str]]] = iter([[(0, "")]])
    else:
        chunks = _stdin_lines(sys.stdin)
    appended: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    async with open_ledger(settings) as client:
        # Reading stdin blocks; do it off the event loop so the writer keeps its lease.
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            submissions = _parse(args, chunk, signer, settings.ledger)
            results = iter(await _append_all(
                client, [s for s in submissions if isinstance(s, _Submission)]))
            for (number, _), submission in zip(chunk, submissions, strict=True):
                outcome = submission if isinstance(submission, CanonlogError) else next(results)
                if isinstance(outcome, CanonlogError):
                    refused.append({"line": number, "error": type(outcome).__name__,
                                    "message": str(outcome)})
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    appended += [_event_json(e) for e in outcome]
    if args.json:
        print_json({"ledger_id": settings.ledger, "appended": appended, "refused": refused})
    else:
        for e in appended:
            print(f"#{e['sequence']} {e['stream_id']} v{e['stream_version']} {e['event_type']} "
                  f"{e['event_id']} {e['hash']}")
        for r in refused:
            where = f"line {r['line']}: " if r["line"] else ""
            print(f"canonlog: {where}{r['error']}: {r['message']}", file=sys.stderr)
        if refused and args.stream is None:
            print(f"canonlog: appended {len(appended)} event(s), refused {len(refused)} line(s)",
                  file=sys.stderr)
    return EXIT_REFUSED if refused else EXIT_OK


def register(sub: Any) -> None:
    """Adds `append` to the `canonlog` parser."""
    p = add_command(sub, "append", cmd_append,
                    "append an event through the writer, or JSON Lines from stdin")
    p.add_argument("--ledger", help="ledger id (default: CANONLOG_LEDGER or main)")
    p.add_argument("--writer-id", help="the writer to append as (default: CANONLOG_WRITER_ID)")
    p.add_argument("--stream", help="stream id; without it, each stdin line is one event: "
                                    '{"stream", "type", "payload", optional "metadata", '
                                    '"expected_version", "event_id", "execution_id", "task_id", '
                                    '"correlation_id", "causation_id", "agent_id", '
                                    '"signing_key_id", "signature" (hex)}')
    p.add_argument("--type", help="event type")
    p.add_argument("--payload", help="JSON object")
    p.add_argument("--metadata", help="JSON object")
    p.add_argument("--expected-version", type=expected_version, default=StreamState.ANY,
                   metavar="N|any|no_stream|stream_exists")
    p.add_argument("--event-id", help="UUID (a signed event gets one if not given)")
    for name in ("execution", "task", "correlation", "causation", "agent"):
        p.add_argument(f"--{name}-id")
    p.add_argument("--key", help="agent private key file: sign each event not signed already")
    p.add_argument("--key-id", help="the agent key's registered id (with --key)")

