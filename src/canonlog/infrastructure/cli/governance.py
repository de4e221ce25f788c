"""`canonlog halt | resume | failover`: the operator's governance commands.

They connect as the operator login (CANONLOG_OPERATOR_DSN; embedded: canonlog_ops).
The thresholds and the waiting period are the ledger's governance policy, stored
and enforced by the database; CANONLOG_ACTOR (or --actor, default the OS user)
names who the chain records as acting. docs/operations.md walks through the
ceremonies.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application import ceremonies
from canonlog.application.ceremonies import CeremonyReport, report_ceremony
from canonlog.application.halting import halt_ledger
from canonlog.domain.ceremony import FAILOVER, POLICY
from canonlog.domain.errors import CeremonyNotFound, InvalidEvent, TamperDetected
from canonlog.domain.governance import GovernancePolicy
from canonlog.infrastructure.bootstrap import halt_channels
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    CommandError,
    actor_of,
    add_command,
    add_group,
    add_ledger_and_actor,
    governed_log,
    ledger_log,
    print_json,
    render,
)
from canonlog.infrastructure.keyfiles import load_private_key
from canonlog.infrastructure.settings import Settings


def describe_policy(policy: GovernancePolicy) -> str:
    """One line: the witnesses, thresholds, waiting period and proposers."""
    witnesses = ", ".join(f"{w.key_id} ({w.owner_id})" for w in policy.witnesses)
    return (f"witnesses {witnesses}; thresholds failover {policy.failover_threshold}, resume "
            f"{policy.resume_threshold}, policy {policy.policy_threshold}; resume waits "
            f"{policy.resume_wait_seconds}s after a halt; proposers {', '.join(policy.proposers)}")


def forged(count: int) -> CommandError:
    return CommandError(f"{count} recorded approval signature(s) do not verify", EXIT_VERIFY_FAILED)


# -- halt -----------------------------------------------------------------------------


async def cmd_halt(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger), halt_channels(settings) as channels:
        halted = await halt_ledger(log, ledger, args.reason, actor_of(settings, args), channels)
        state = await log.ledger_state(ledger)
        head = await log.head(ledger)
    return render(args, {"ledger_id": ledger, "halted": True, "changed": halted.recorded,
                         "reason": state.halt_reason, "sequence": head.sequence},
                  f"ledger {ledger} halted at sequence {head.sequence}: {state.halt_reason}"
                  if halted.recorded else f"ledger {ledger} was already halted: {state.halt_reason}")


# -- ceremony output ------------------------------------------------------------------


def ceremony_json(report: CeremonyReport) -> dict[str, Any]:
    c = report.ceremony
    ready_at = report.ready_at
    return {
        "ledger_id": c.ledger_id, "proposal_id": c.proposal_id, "kind": c.kind,
        "status": c.status, "writer_id": c.writer_id, "epoch": c.epoch,
        "target_writer_id": c.target_writer_id, "head_sequence": c.head_sequence,
        "head_hash": c.head_hash.hex() if c.head_hash else None,
        "halt_sequence": c.halt_sequence, "halt_hash": c.halt_hash.hex() if c.halt_hash else None,
        "policy": c.policy.document() if c.policy else None, "policy_sequence": c.policy_sequence,
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


def show_ceremony(report: CeremonyReport) -> None:
    c = report.ceremony
    if c.kind == POLICY:
        assert c.policy is not None
        print(f"proposal {c.proposal_id} (policy, {c.status}): ledger {c.ledger_id}, replacing "
              f"the policy of sequence {c.policy_sequence} with: {describe_policy(c.policy)}")
    elif c.kind == FAILOVER:
        assert c.head_hash is not None
        print(f"proposal {c.proposal_id} (failover, {c.status}): ledger {c.ledger_id} from "
              f"{c.writer_id} at epoch {c.epoch} to {c.target_writer_id}; head when proposed "
              f"#{c.head_sequence} {c.head_hash.hex()}")
    else:
        assert c.halt_hash is not None
        print(f"proposal {c.proposal_id} (resume, {c.status}): ledger {c.ledger_id}, halt at "
              f"#{c.halt_sequence} {c.halt_hash.hex()}")
        ready_at = report.ready_at
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


def private_key_of(args: argparse.Namespace) -> tuple[Ed25519PrivateKey | None, bytes | None]:
    if args.key:
        return load_private_key(Path(args.key)), None
    try:
        signature = bytes.fromhex(args.signature)
    except ValueError as exc:
        raise InvalidEvent(f"--signature is not hex: {exc}") from exc
    return None, signature


# -- proposals (failover and policy) --------------------------------------------------


def proposed(args: argparse.Namespace, report: CeremonyReport, group: str) -> int:
    """Renders a proposal just opened, with the command each witness runs next."""
    if args.json:
        print_json(ceremony_json(report))
    else:
        show_ceremony(report)
        print(f"each witness approves with: canonlog {group} approve --proposal "
              f"{report.ceremony.proposal_id} --key-id ID --key FILE")
    return EXIT_OK


async def cmd_approve_proposal(settings: Settings, args: argparse.Namespace) -> int:
    """`canonlog failover|policy approve`: one witness signs an open proposal."""
    private_key, signature = private_key_of(args)
    async with governed_log(settings, args) as (log, ledger):
        ceremony = await ceremonies.approve(log, ledger, args.proposal, args.key_id,
                                            actor_of(settings, args), private_key=private_key,
                                            signature=signature)
        report = await report_ceremony(log, ceremony)
    return render(args, ceremony_json(report),
                  f"key {args.key_id} approved proposal {args.proposal} of ledger {ledger}: "
                  f"{report.witnesses} of {report.threshold} witnesses")


async def list_proposals(settings: Settings, args: argparse.Namespace, kind: str) -> int:
    """`canonlog failover|policy status`: the proposals of one kind, signatures re-verified.

    A recorded approval whose signature does not verify fails the command (exit 1).
    """
    async with ledger_log(settings, args, must_exist=True) as (log, ledger):
        found = [c for c in await log.ceremonies(ledger, args.proposal) if c.kind == kind]
        if args.proposal is not None and not found:
            raise CeremonyNotFound(f"ledger {ledger} has no {kind} proposal {args.proposal}")
        reports = [await report_ceremony(log, c) for c in found]
    if args.json:
        print_json({"ledger_id": ledger, "ceremonies": [ceremony_json(r) for r in reports]})
    elif not reports:
        print(f"ledger {ledger} has no {kind} proposals")
    for report in reports if not args.json else ():
        show_ceremony(report)
    bad = [a for r in reports for a in r.forged]
    if bad:
        raise forged(len(bad))
    return EXIT_OK


# -- failover -------------------------------------------------------------------------


async def cmd_failover_propose(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger):
        ceremony = await ceremonies.propose_failover(log, ledger, args.to, actor_of(settings, args))
        report = await report_ceremony(log, ceremony)
    return proposed(args, report, "failover")


async def cmd_failover_execute(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger):
        grant = await ceremonies.execute_failover(log, ledger, args.proposal,
                                                  actor_of(settings, args))
        (ceremony,) = await log.ceremonies(ledger, args.proposal)
    return render(args, {"ledger_id": ledger, "proposal_id": args.proposal,
                         "writer_id": grant.writer_id, "epoch": grant.epoch,
                         "sequence": ceremony.closed_seq},
                  f"writer {grant.writer_id} now holds the grant of ledger {ledger} at epoch "
                  f"{grant.epoch} (canonlog.writer_promoted at sequence {ceremony.closed_seq}); "
                  f"start it with CANONLOG_WRITER_ID={grant.writer_id}")


async def cmd_failover_status(settings: Settings, args: argparse.Namespace) -> int:
    return await list_proposals(settings, args, FAILOVER)


# -- resume ---------------------------------------------------------------------------


async def cmd_resume_approve(settings: Settings, args: argparse.Namespace) -> int:
    private_key, signature = private_key_of(args)
    async with governed_log(settings, args) as (log, ledger):
        ceremony = await ceremonies.approve_resume(log, ledger, args.key_id,
                                                   actor_of(settings, args),
                                                   private_key=private_key, signature=signature)
        report = await report_ceremony(log, ceremony)
    return render(args, ceremony_json(report),
                  f"key {args.key_id} approved resuming ledger {ledger} after the halt at "
                  f"sequence {ceremony.halt_sequence} (proposal {ceremony.proposal_id}): "
                  f"{report.witnesses} of {report.threshold} witnesses")


async def cmd_resume_execute(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger), halt_channels(settings) as channels:
        sequence = await ceremonies.execute_resume(log, ledger, actor_of(settings, args),
                                                   channels)
    return render(args, {"ledger_id": ledger, "resumed": True, "sequence": sequence},
                  f"ledger {ledger} resumed (canonlog.resumed at sequence {sequence})")


async def cmd_resume_status(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args, must_exist=True) as (log, ledger):
        state = await log.ledger_state(ledger)
        ceremony = await ceremonies.current_resume_ceremony(log, ledger)
        report = await report_ceremony(log, ceremony) if ceremony else None
        in_force = await ceremonies.policy_in_force(log, ledger)
    wait = in_force.policy.resume_wait_seconds if in_force else None
    if args.json:
        print_json({"ledger_id": ledger, "halted": state.halted, "halt_reason": state.halt_reason,
                    "min_wait_seconds": wait,
                    "ceremony": ceremony_json(report) if report else None})
    elif not state.halted:
        print(f"ledger {ledger} is not halted")
    else:
        print(f"ledger {ledger} is halted: {state.halt_reason}")
        if report is None:
            print("  no witness has approved resuming yet: canonlog resume approve --key-id ID "
                  "--key FILE")
        else:
            show_ceremony(report)
    if report is not None and report.forged:
        raise forged(len(report.forged))
    return EXIT_OK


# -- registration ---------------------------------------------------------------------


def add_signing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-id", required=True, help="the witness key's registered id")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--key", help="the witness's private key file (signs here)")
    how.add_argument("--signature", help="a signature made elsewhere over the statement, as hex")


def register(sub: Any) -> None:
    """Adds halt, resume and failover to the `canonlog` parser.

    Executing a ceremony whose recorded approvals do not all verify is a failed
    verification (exit 1), not a refusal.
    """
    common = add_ledger_and_actor
    forged = (TamperDetected,)
    p = common(add_command(sub, "halt", cmd_halt,
                           "halt the ledger: a chained event, then every append is refused"))
    p.add_argument("--reason", required=True, help="why (1 to 1000 characters)")

    group = add_group(sub, "resume", "resume a halted ledger through the witnessed ceremony")
    p = common(add_command(group, "approve", cmd_resume_approve,
                           "a witness signs the resume statement of the current halt"))
    add_signing(p)
    common(add_command(group, "execute", cmd_resume_execute,
                       "resume, once the waiting period is over and enough witnesses approved",
                       failed_verification=forged))
    common(add_command(group, "status", cmd_resume_status,
                       "the halt, its waiting period and the approvals so far"), actor=False)

    group = add_group(sub, "failover", "move the write grant to another writer, witnessed")
    p = common(add_command(group, "propose", cmd_failover_propose,
                           "open a failover proposal against the current grant and head"))
    p.add_argument("--to", required=True, metavar="WRITER", help="the writer id to promote")
    p = common(add_command(group, "approve", cmd_approve_proposal,
                           "a witness signs a failover proposal's statement"))
    p.add_argument("--proposal", type=int, required=True)
    add_signing(p)
    p = common(add_command(group, "execute", cmd_failover_execute,
                           "promote the proposed writer once enough witnesses approved",
                           failed_verification=forged))
    p.add_argument("--proposal", type=int, required=True)
    p = common(add_command(group, "status", cmd_failover_status,
                           "proposals, their approvals (signatures re-verified), readiness"),
               actor=False)
    p.add_argument("--proposal", type=int)
