"""`canonlog halt | resume | failover | keys`: the operator's governance commands.

Ceremony settings: CANONLOG_WITNESS_THRESHOLD (distinct witnesses a ceremony
needs, default 2), CANONLOG_RESUME_WAIT_SECONDS (default 172800, 48 hours) and
CANONLOG_ACTOR (who the chain records as acting; default the OS user, or
--actor). docs/operations.md walks through the ceremonies.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application import ceremonies
from canonlog.application.ceremonies import CeremonyReport, report_ceremony
from canonlog.application.halting import halt_ledger
from canonlog.domain.ceremony import FAILOVER
from canonlog.domain.errors import InvalidEvent, TamperDetected
from canonlog.infrastructure.bootstrap import halt_channels, open_event_log
from canonlog.infrastructure.cli_append import register as register_append
from canonlog.infrastructure.cli_support import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_VERIFY_FAILED,
    add_command,
    add_group,
    print_json,
)
from canonlog.infrastructure.keyfiles import generate_key_file, load_private_key, parse_public_key
from canonlog.infrastructure.settings import Settings


def _ledger(settings: Settings, args: argparse.Namespace) -> str:
    return str(args.ledger or settings.ledger)


def _actor(settings: Settings, args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(f"canonlog: {message}", file=sys.stderr)
    return code


# -- halt -----------------------------------------------------------------------------


async def cmd_halt(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _), halt_channels(settings) as channels:
        halted = await halt_ledger(log, ledger, args.reason, _actor(settings, args), channels)
        changed = halted.recorded
        state = await log.ledger_state(ledger)
        head = await log.head(ledger)
    if args.json:
        print_json({"ledger_id": ledger, "halted": True, "changed": changed,
                    "reason": state.halt_reason, "sequence": head.sequence})
    elif changed:
        print(f"ledger {ledger} halted at sequence {head.sequence}: {state.halt_reason}")
    else:
        print(f"ledger {ledger} was already halted: {state.halt_reason}")
    return EXIT_OK


# -- ceremony output ------------------------------------------------------------------


def _ceremony_json(report: CeremonyReport, min_wait: int | None = None) -> dict[str, Any]:
    c = report.ceremony
    ready_at = report.ready_at(min_wait) if min_wait is not None else None
    return {
        "ledger_id": c.ledger_id, "proposal_id": c.proposal_id, "kind": c.kind,
        "status": c.status, "writer_id": c.writer_id, "epoch": c.epoch,
        "target_writer_id": c.target_writer_id, "head_sequence": c.head_sequence,
        "head_hash": c.head_hash.hex() if c.head_hash else None,
        "halt_sequence": c.halt_sequence, "halt_hash": c.halt_hash.hex() if c.halt_hash else None,
        "halted_at": report.halted_at, "wait_ends_at": ready_at,
        "proposed_by": c.proposed_by, "proposed_seq": c.proposed_seq,
        "proposed_at": c.proposed_at, "closed_seq": c.closed_seq,
        "statement": report.statement.hex(),
        "approvals": [{"key_id": a.approval.key_id, "owner_id": a.approval.owner_id,
                       "signature": a.approval.signature.hex(),
                       "approved_seq": a.approval.approved_seq,
                       "approved_by": a.approval.approved_by,
                       "counts": a.problem is None, "problem": a.problem}
                      for a in report.approvals],
        "witnesses": report.witnesses, "threshold": report.threshold,
        "executable": report.blocker is None, "blocker": report.blocker,
    }


def _show_ceremony(report: CeremonyReport, min_wait: int | None = None) -> None:
    c = report.ceremony
    if c.kind == FAILOVER:
        assert c.head_hash is not None
        print(f"proposal {c.proposal_id} (failover, {c.status}): ledger {c.ledger_id} from "
              f"{c.writer_id} at epoch {c.epoch} to {c.target_writer_id}; head when proposed "
              f"#{c.head_sequence} {c.head_hash.hex()}")
    else:
        assert c.halt_hash is not None
        print(f"proposal {c.proposal_id} (resume, {c.status}): ledger {c.ledger_id}, halt at "
              f"#{c.halt_sequence} {c.halt_hash.hex()}")
        ready_at = report.ready_at(min_wait) if min_wait is not None else None
        if ready_at is not None and c.status == "open":
            print(f"  halted at {report.halted_at:%Y-%m-%d %H:%M:%S %Z}; the waiting period "
                  f"ends at {ready_at:%Y-%m-%d %H:%M:%S %Z}")
    print(f"  proposed by {c.proposed_by} at sequence {c.proposed_seq}"
          + (f"; closed at sequence {c.closed_seq}" if c.closed_seq else ""))
    for checked in report.approvals:
        a = checked.approval
        print(f"  approval by key {a.key_id} (witness {a.owner_id}) at sequence "
              f"{a.approved_seq}: {checked.problem or 'signature verifies'}")
    print(f"  witnesses: {report.witnesses} of {report.threshold}; "
          + ("ready to execute" if report.blocker is None else f"not executable: {report.blocker}"))
    if c.status == "open":
        print(f"  statement to sign: {report.statement.hex()}")


def _private_key(args: argparse.Namespace) -> tuple[Ed25519PrivateKey | None, bytes | None]:
    if args.key:
        return load_private_key(Path(args.key)), None
    try:
        signature = bytes.fromhex(args.signature)
    except ValueError as exc:
        raise InvalidEvent(f"--signature is not hex: {exc}") from exc
    return None, signature


# -- failover -------------------------------------------------------------------------


async def cmd_failover_propose(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        ceremony = await ceremonies.propose_failover(log, ledger, args.to, _actor(settings, args))
        report = await report_ceremony(log, ceremony, settings.witness_threshold)
    if args.json:
        print_json(_ceremony_json(report))
    else:
        _show_ceremony(report)
        print(f"each witness approves with: canonlog failover approve --proposal "
              f"{ceremony.proposal_id} --key-id ID --key FILE")
    return EXIT_OK


async def cmd_failover_approve(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    private_key, signature = _private_key(args)
    async with open_event_log(settings) as (log, _):
        ceremony = await ceremonies.approve(log, ledger, args.proposal, args.key_id,
                                            _actor(settings, args), private_key=private_key,
                                            signature=signature)
        report = await report_ceremony(log, ceremony, settings.witness_threshold)
    if args.json:
        print_json(_ceremony_json(report))
    else:
        print(f"key {args.key_id} approved proposal {args.proposal} of ledger {ledger}: "
              f"{report.witnesses} of {report.threshold} witnesses")
    return EXIT_OK


async def cmd_failover_execute(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        try:
            grant = await ceremonies.execute_failover(log, ledger, args.proposal,
                                                      settings.witness_threshold,
                                                      _actor(settings, args))
        except TamperDetected as exc:
            return _fail(f"TamperDetected: {exc}", EXIT_VERIFY_FAILED)
        (ceremony,) = await log.ceremonies(ledger, args.proposal)
    if args.json:
        print_json({"ledger_id": ledger, "proposal_id": args.proposal,
                    "writer_id": grant.writer_id, "epoch": grant.epoch,
                    "sequence": ceremony.closed_seq})
    else:
        print(f"writer {grant.writer_id} now holds the grant of ledger {ledger} at epoch "
              f"{grant.epoch} (canonlog.writer_promoted at sequence {ceremony.closed_seq}); "
              f"start it with CANONLOG_WRITER_ID={grant.writer_id}")
    return EXIT_OK


async def cmd_failover_status(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        await log.ledger_state(ledger)
        found = [c for c in await log.ceremonies(ledger, args.proposal) if c.kind == FAILOVER]
        if args.proposal is not None and not found:
            return _fail(f"CeremonyNotFound: ledger {ledger} has no failover proposal "
                         f"{args.proposal}")
        reports = [await report_ceremony(log, c, settings.witness_threshold) for c in found]
    if args.json:
        print_json({"ledger_id": ledger, "ceremonies": [_ceremony_json(r) for r in reports]})
    elif not reports:
        print(f"ledger {ledger} has no failover proposals")
    for report in reports if not args.json else ():
        _show_ceremony(report)
    forged = [a for r in reports for a in r.forged]
    if forged:
        return _fail(f"{len(forged)} recorded approval signature(s) do not verify",
                     EXIT_VERIFY_FAILED)
    return EXIT_OK


# -- resume ---------------------------------------------------------------------------


async def cmd_resume_approve(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    private_key, signature = _private_key(args)
    async with open_event_log(settings) as (log, _):
        ceremony = await ceremonies.approve_resume(log, ledger, args.key_id,
                                                   _actor(settings, args),
                                                   private_key=private_key, signature=signature)
        report = await report_ceremony(log, ceremony, settings.witness_threshold)
    if args.json:
        print_json(_ceremony_json(report, settings.resume_wait_seconds))
    else:
        print(f"key {args.key_id} approved resuming ledger {ledger} after the halt at sequence "
              f"{ceremony.halt_sequence} (proposal {ceremony.proposal_id}): "
              f"{report.witnesses} of {report.threshold} witnesses")
    return EXIT_OK


async def cmd_resume_execute(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _), halt_channels(settings) as channels:
        try:
            sequence = await ceremonies.execute_resume(
                log, ledger, settings.witness_threshold, settings.resume_wait_seconds,
                _actor(settings, args), channels)
        except TamperDetected as exc:
            return _fail(f"TamperDetected: {exc}", EXIT_VERIFY_FAILED)
    if args.json:
        print_json({"ledger_id": ledger, "resumed": True, "sequence": sequence})
    else:
        print(f"ledger {ledger} resumed (canonlog.resumed at sequence {sequence})")
    return EXIT_OK


async def cmd_resume_status(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        state = await log.ledger_state(ledger)
        ceremony = await ceremonies.current_resume_ceremony(log, ledger)
        report = (await report_ceremony(log, ceremony, settings.witness_threshold)
                  if ceremony else None)
    wait = settings.resume_wait_seconds
    if args.json:
        print_json({"ledger_id": ledger, "halted": state.halted, "halt_reason": state.halt_reason,
                    "min_wait_seconds": wait,
                    "ceremony": _ceremony_json(report, wait) if report else None})
    elif not state.halted:
        print(f"ledger {ledger} is not halted")
    else:
        print(f"ledger {ledger} is halted: {state.halt_reason}")
        if report is None:
            print("  no witness has approved resuming yet: canonlog resume approve --key-id ID "
                  "--key FILE")
        else:
            _show_ceremony(report, wait)
    if report is not None and report.forged:
        return _fail(f"{len(report.forged)} recorded approval signature(s) do not verify",
                     EXIT_VERIFY_FAILED)
    return EXIT_OK


# -- keys -----------------------------------------------------------------------------


async def cmd_keys_add(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    public_key = parse_public_key(args.public_key)
    async with open_event_log(settings) as (log, _):
        sequence = await log.add_key(ledger, args.key_id, args.purpose, args.owner, public_key,
                                     _actor(settings, args))
    if args.json:
        print_json({"ledger_id": ledger, "key_id": args.key_id, "purpose": args.purpose,
                    "owner_id": args.owner, "public_key": public_key.hex(), "sequence": sequence})
    else:
        print(f"key {args.key_id} ({args.purpose} of {args.owner}) registered in ledger {ledger} "
              f"at sequence {sequence}")
    return EXIT_OK


async def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        sequence = await log.revoke_key(ledger, args.key_id, _actor(settings, args), args.reason)
    if args.json:
        print_json({"ledger_id": ledger, "key_id": args.key_id, "sequence": sequence})
    else:
        print(f"key {args.key_id} revoked in ledger {ledger} at sequence {sequence}")
    return EXIT_OK


async def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    ledger = _ledger(settings, args)
    async with open_event_log(settings) as (log, _):
        keys = await log.list_keys(ledger)
    if args.json:
        print_json([{"key_id": k.key_id, "purpose": k.purpose, "owner_id": k.owner_id,
                     "public_key": k.public_key.hex(), "added_seq": k.added_seq,
                     "revoked_seq": k.revoked_seq} for k in keys])
        return EXIT_OK
    if not keys:
        print(f"ledger {ledger} has no registered keys")
    for k in keys:
        state = f"revoked at #{k.revoked_seq}" if k.revoked_seq else "active"
        print(f"{k.key_id}  {k.purpose:7}  {k.owner_id}  {k.public_key.hex()}  "
              f"added at #{k.added_seq}, {state}")
    return EXIT_OK


async def cmd_keys_generate(settings: Settings, args: argparse.Namespace) -> int:
    public = generate_key_file(Path(args.out))
    if args.json:
        print_json({"file": args.out, "public_key": public.hex()})
    else:
        print(public.hex())
        print(f"private key written to {args.out}; register the public key with "
              f"canonlog keys add --public-key {public.hex()} ...", file=sys.stderr)
    return EXIT_OK


# -- registration ---------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, actor: bool = True) -> argparse.ArgumentParser:
    parser.add_argument("--ledger", help="ledger id (default: CANONLOG_LEDGER or main)")
    if actor:
        parser.add_argument("--actor", help="who the chain records as acting "
                                            "(default: CANONLOG_ACTOR or the OS user)")
    return parser


def _signing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-id", required=True, help="the witness key's registered id")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--key", help="the witness's private key file (signs here)")
    how.add_argument("--signature", help="a signature made elsewhere over the statement, as hex")


def register(sub: Any) -> None:
    """Adds halt, resume, failover and keys (and append, from cli_append) to the parser."""
    p = _common(add_command(sub, "halt", cmd_halt,
                            "halt the ledger: a chained event, then every append is refused"))
    p.add_argument("--reason", required=True, help="why (1 to 1000 characters)")

    group = add_group(sub, "resume", "resume a halted ledger through the witnessed ceremony")
    p = _common(add_command(group, "approve", cmd_resume_approve,
                            "a witness signs the resume statement of the current halt"))
    _signing(p)
    _common(add_command(group, "execute", cmd_resume_execute,
                        "resume, once the waiting period is over and enough witnesses approved"))
    _common(add_command(group, "status", cmd_resume_status,
                        "the halt, its waiting period and the approvals so far"), actor=False)

    group = add_group(sub, "failover", "move the write grant to another writer, witnessed")
    p = _common(add_command(group, "propose", cmd_failover_propose,
                            "open a failover proposal against the current grant and head"))
    p.add_argument("--to", required=True, metavar="WRITER", help="the writer id to promote")
    p = _common(add_command(group, "approve", cmd_failover_approve,
                            "a witness signs a failover proposal's statement"))
    p.add_argument("--proposal", type=int, required=True)
    _signing(p)
    p = _common(add_command(group, "execute", cmd_failover_execute,
                            "promote the proposed writer once enough witnesses approved"))
    p.add_argument("--proposal", type=int, required=True)
    p = _common(add_command(group, "status", cmd_failover_status,
                            "proposals, their approvals (signatures re-verified), readiness"),
                actor=False)
    p.add_argument("--proposal", type=int)

    group = add_group(sub, "keys", "agent and witness Ed25519 public keys, each change chained")
    p = _common(add_command(group, "add", cmd_keys_add, "register a public key"))
    p.add_argument("--key-id", required=True)
    p.add_argument("--purpose", required=True, choices=["agent", "witness"])
    p.add_argument("--owner", required=True, help="the agent id or witness name it belongs to")
    p.add_argument("--public-key", required=True, help="32-byte Ed25519 public key as hex")
    p = _common(add_command(group, "revoke", cmd_keys_revoke,
                            "revoke a key: events it signs from now on are refused"))
    p.add_argument("--key-id", required=True)
    p.add_argument("--reason", required=True)
    _common(add_command(group, "list", cmd_keys_list, "every key, revoked ones included"),
            actor=False)
    p = add_command(group, "generate", cmd_keys_generate,
                    "write a new private key file (mode 0600) and print its public key")
    p.add_argument("--out", required=True, help="file to create; never overwritten")
    register_append(sub)
