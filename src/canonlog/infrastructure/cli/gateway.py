"""`canonlog write ...` and `canonlog audit`: governed writes through the write gateway.

Every step opens the gateway over the ledger's writer (as `canonlog append` does) with
the policy file CANONLOG_GATEWAY_POLICY_FILE (--policy-file); `show`, `statement`
and `audit` only read. `audit` answers who approved what, under which policy
version, from the chain alone.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from canonlog.application.gateway_audit import audit_trail
from canonlog.domain.canonical import parse_json
from canonlog.domain.errors import InvalidCommand
from canonlog.domain.gateway import WriteCommand
from canonlog.domain.tickets import Ticket
from canonlog.infrastructure.bootstrap import open_event_log, open_gateway
from canonlog.infrastructure.cli.support import (
    actor_of,
    add_command,
    add_group,
    add_ledger_and_actor,
    ledger_of,
    print_json,
    render,
)
from canonlog.infrastructure.keyfiles import load_private_key
from canonlog.infrastructure.settings import Settings


def _settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """settings with the command's --ledger and --policy-file applied."""
    update: dict[str, Any] = {"ledger": ledger_of(settings, args)}
    if getattr(args, "policy_file", None):
        update["gateway_policy_file"] = Path(args.policy_file)
    if getattr(args, "actor", None):
        update["actor"] = args.actor
    return settings.model_copy(update=update)


def _payload(text: str) -> Any:
    """--payload: JSON text, @FILE for a file's content, or - for stdin."""
    if text == "-":
        return parse_json(sys.stdin.read(), "--payload")
    if text.startswith("@"):
        try:
            return parse_json(Path(text[1:]).read_bytes(), "--payload")
        except OSError as exc:
            raise InvalidCommand(f"cannot read the payload file {text[1:]}: {exc}") from exc
    return parse_json(text, "--payload")


def _show(args: argparse.Namespace, ticket: Ticket) -> int:
    data = ticket.summary()
    approvals = ", ".join(a["approver"] for a in data["approvals"]) or "none"
    return render(args, data, (
        f"ticket {data['ticket']}: {data['status']} ({data['task_id']} {data['operation']} "
        f"{data['target']}); approvals {len(data['approvals'])}/{data['approvals_required']} "
        f"({approvals}); policy version {data['policy_version']}; expires "
        f"{data['expires_at']}" + (f"; {data['reason']}" if data["reason"] else "")
        + (f"; committed at sequence {data['committed_seq']}" if data["committed_seq"] else "")))


async def cmd_request(settings: Settings, args: argparse.Namespace) -> int:
    settings = _settings(settings, args)
    command = WriteCommand.create(
        task_id=args.task, execution_id=args.execution_id, target=args.target,
        operation=args.operation, payload=_payload(args.payload), summary=args.summary,
        requested_by=args.requested_by or actor_of(settings, args))
    async with open_gateway(settings) as gateway:
        return _show(args, await gateway.request_write(command))


async def cmd_statement(settings: Settings, args: argparse.Namespace) -> int:
    async with open_gateway(_settings(settings, args), writing=False) as gateway:
        statement = gateway.statement(await gateway.ticket(args.ticket))
    sys.stdout.write(statement.decode("utf-8") + "\n")
    return 0


async def cmd_approve(settings: Settings, args: argparse.Namespace) -> int:
    settings = _settings(settings, args)
    if (args.key_file is None) == (args.signature is None):
        raise InvalidCommand("give exactly one of --key-file and --signature")
    async with open_gateway(settings) as gateway:
        if args.key_file is not None:
            key = load_private_key(Path(args.key_file))
            signature = key.sign(gateway.statement(await gateway.ticket(args.ticket)))
        else:
            try:
                signature = bytes.fromhex(args.signature)
            except ValueError as exc:
                raise InvalidCommand(f"--signature is not hex: {exc}") from exc
        return _show(args, await gateway.approve(args.ticket, args.key_id, signature,
                                                 actor_of(settings, args)))


async def cmd_reject(settings: Settings, args: argparse.Namespace) -> int:
    settings = _settings(settings, args)
    async with open_gateway(settings) as gateway:
        return _show(args, await gateway.reject(args.ticket, args.reason,
                                                actor_of(settings, args)))


async def cmd_commit(settings: Settings, args: argparse.Namespace) -> int:
    settings = _settings(settings, args)
    async with open_gateway(settings) as gateway:
        result = await gateway.commit_write(args.ticket, actor_of(settings, args))
    events = [{"sequence": e.sequence, "stream_id": e.stream_id, "event_type": e.event_type,
               "hash": e.hash.hex()} for e in result.events]
    first = result.events[0]
    return render(args, {"ticket": args.ticket, "replayed": result.replayed, "events": events},
                  f"ticket {args.ticket} {'was committed before' if result.replayed else 'committed'}"
                  f": {first.event_type} on {first.stream_id} at sequence {first.sequence}")


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_gateway(_settings(settings, args), writing=False) as gateway:
        return _show(args, await gateway.ticket(args.ticket))


async def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    async with open_event_log(settings) as (log, _):
        entries = await audit_trail(log, ledger_of(settings, args), task_id=args.task,
                                    execution_id=args.ticket, since=args.since)
    if args.json:
        print_json([e.as_dict() for e in entries])
    else:
        for entry in entries:
            print(entry.line())
    return 0


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. 2026-12-01T00:00Z)")
    return moment


def _gateway_command(group: Any, name: str, handler: Any, help_text: str, *,
                     ticket: bool = True) -> argparse.ArgumentParser:
    parser = add_command(group, name, handler, help_text)
    add_ledger_and_actor(parser)
    parser.add_argument("--policy-file", help="the gateway's policy file "
                                              "(default: CANONLOG_GATEWAY_POLICY_FILE)")
    if ticket:
        parser.add_argument("--ticket", required=True, help="the ticket: its execution id")
    return parser


def register(sub: Any) -> None:
    """Adds `canonlog write request|statement|approve|reject|commit|show` and `canonlog audit`."""
    group = add_group(sub, "write", "governed writes through the write gateway")
    p = _gateway_command(group, "request", cmd_request,
                         "request a governed write; prints its ticket", ticket=False)
    p.add_argument("--task", required=True, help="the task id whose policy applies")
    p.add_argument("--execution-id", required=True, help="this run's id; names the ticket")
    p.add_argument("--target", required=True, help="what is written (a stream of the ledger)")
    p.add_argument("--operation", required=True,
                   choices=["create", "update", "upsert", "delete", "append"])
    p.add_argument("--payload", required=True, help="a JSON object, @FILE, or - for stdin")
    p.add_argument("--summary", default="", help="what the write does, for people")
    p.add_argument("--requested-by", help="who requests it (default: --actor)")
    _gateway_command(group, "statement", cmd_statement,
                     "print the approval statement an approver signs")
    p = _gateway_command(group, "approve", cmd_approve,
                         "approve a ticket with an approver's Ed25519 signature")
    p.add_argument("--key-id", required=True, help="the approver's registered key id")
    p.add_argument("--key-file", help="sign the statement with this private key file")
    p.add_argument("--signature", help="a signature made offline over the statement, as hex")
    p = _gateway_command(group, "reject", cmd_reject, "reject a ticket")
    p.add_argument("--reason", required=True)
    _gateway_command(group, "commit", cmd_commit,
                     "perform an approved write (once; again returns the original result)")
    _gateway_command(group, "show", cmd_show, "a ticket's state, from the chain")
    p = add_command(sub, "audit", cmd_audit,
                    "the gateway's audit trail from the chain: who requested, approved, "
                    "rejected and committed what, under which policy version")
    add_ledger_and_actor(p, actor=False)
    p.add_argument("--task", help="only this task id's events")
    p.add_argument("--ticket", help="only this ticket's events")
    p.add_argument("--since", type=_since, help="only events recorded at or after this time")
