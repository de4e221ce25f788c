"""`canonlog ledger init | adopt-policy` and `canonlog policy ...`: the governance policy.

The administrator (CANONLOG_ADMIN_DSN) establishes a ledger's policy once: `ledger
init` for a new ledger, `ledger adopt-policy` for one created before policies.
From then on the policy changes only through a policy ceremony the operator
proposes and the witnesses of the policy in force approve. `policy sign` makes an
approval offline, with the witness's key file and no database: anyone may submit
it with `--signature`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from canonlog.application import ceremonies
from canonlog.application.ceremonies import report_ceremony
from canonlog.domain.ceremony import POLICY
from canonlog.domain.errors import (
    InvalidEvent,
    LedgerNotFound,
    PolicyAlreadyEstablished,
    TamperDetected,
)
from canonlog.domain.governance import DEFAULT_PROPOSERS, GovernancePolicy, PolicyWitness
from canonlog.infrastructure.cli.governance import (
    add_signing,
    cmd_approve_proposal,
    describe_policy,
    list_proposals,
    proposed,
)
from canonlog.infrastructure.cli.support import (
    actor_of,
    add_command,
    add_group,
    add_ledger_and_actor,
    governed_log,
    ledger_log,
    render,
)
from canonlog.infrastructure.keyfiles import KeyFileError, load_private_key, parse_public_key
from canonlog.infrastructure.settings import Settings

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in "48h", "30m", "90s", "2d" or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidEvent(f"{text!r} is not a duration such as 48h, 30m, 90s or 2d")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _witness(spec: str) -> PolicyWitness:
    """FILE, KEY_ID=FILE or KEY_ID:OWNER=FILE (FILE may be the hex itself): the file holds
    the public key as hex, as `keys generate` prints it; the key id defaults to the
    file's name without its suffix, the owner to the key id."""
    name, equals, source = spec.rpartition("=")
    path = Path(source)
    if not equals:
        name = path.stem
    key_id, _, owner = name.partition(":")
    try:
        text = path.read_text("utf-8") if path.is_file() else source
        public_key = parse_public_key(text)
    except (OSError, KeyFileError) as exc:
        raise InvalidEvent(f"--witness {spec}: {exc}") from exc
    return PolicyWitness(key_id, owner or key_id, public_key)


def policy_of(args: argparse.Namespace) -> GovernancePolicy:
    """The policy the options describe; every threshold defaults to --threshold."""
    witnesses = tuple(_witness(spec) for spec in args.witness)
    return GovernancePolicy(
        witnesses=witnesses,
        failover_threshold=args.failover_threshold or args.threshold,
        resume_threshold=args.resume_threshold or args.threshold,
        policy_threshold=args.policy_threshold or args.threshold,
        resume_wait_seconds=parse_duration(args.resume_wait),
        proposers=tuple(args.proposer or DEFAULT_PROPOSERS))


def _policy_json(ledger: str, sequence: int, policy: GovernancePolicy) -> dict[str, Any]:
    return {"ledger_id": ledger, "sequence": sequence, "policy": policy.document()}


# -- establishing -----------------------------------------------------------------------


async def _establish(settings: Settings, args: argparse.Namespace, *, new: bool) -> int:
    policy = policy_of(args)
    async with governed_log(settings, args, as_admin=True) as (log, ledger):
        try:
            await log.ledger_state(ledger)
            exists = True
        except LedgerNotFound:
            exists = False
        if new and exists:
            raise PolicyAlreadyEstablished(
                f"ledger {ledger} exists; a ledger created before policies gets one with "
                "`canonlog ledger adopt-policy`")
        if not new and not exists:
            raise LedgerNotFound(f"ledger {ledger} does not exist; create it with "
                                 "`canonlog ledger init`")
        sequence = await log.establish_policy(ledger, policy, actor_of(settings, args))
    return render(args, _policy_json(ledger, sequence, policy),
                  f"ledger {ledger}: governance policy established at sequence {sequence}: "
                  f"{describe_policy(policy)}")


async def cmd_ledger_init(settings: Settings, args: argparse.Namespace) -> int:
    return await _establish(settings, args, new=True)


async def cmd_adopt_policy(settings: Settings, args: argparse.Namespace) -> int:
    return await _establish(settings, args, new=False)


async def cmd_policy_show(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args, must_exist=True) as (log, ledger):
        in_force = await ceremonies.policy_in_force(log, ledger)
    if in_force is None:
        return render(args, {"ledger_id": ledger, "sequence": None, "policy": None},
                      f"ledger {ledger} has no governance policy")
    return render(args, _policy_json(ledger, in_force.sequence, in_force.policy),
                  f"ledger {ledger}: policy established at sequence {in_force.sequence}: "
                  f"{describe_policy(in_force.policy)}")


# -- the policy ceremony --------------------------------------------------------------


async def cmd_policy_propose(settings: Settings, args: argparse.Namespace) -> int:
    policy = policy_of(args)
    async with governed_log(settings, args) as (log, ledger):
        ceremony = await ceremonies.propose_policy(log, ledger, policy, actor_of(settings, args))
        report = await report_ceremony(log, ceremony)
    return proposed(args, report, "policy")


async def cmd_policy_execute(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger):
        sequence = await ceremonies.execute_policy_change(log, ledger, args.proposal,
                                                          actor_of(settings, args))
    return render(args, {"ledger_id": ledger, "proposal_id": args.proposal,
                         "sequence": sequence},
                  f"ledger {ledger}: the policy of proposal {args.proposal} is in force "
                  f"(canonlog.policy_changed at sequence {sequence})")


async def cmd_policy_status(settings: Settings, args: argparse.Namespace) -> int:
    return await list_proposals(settings, args, POLICY)


async def cmd_policy_sign(settings: Settings, args: argparse.Namespace) -> int:
    try:
        statement = bytes.fromhex(args.statement)
    except ValueError as exc:
        raise InvalidEvent(f"--statement is not hex: {exc}") from exc
    signature = load_private_key(Path(args.key)).sign(statement).hex()
    return render(args, {"signature": signature}, signature)


# -- registration ---------------------------------------------------------------------


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--witness", action="append", required=True, metavar="[KEY_ID[:OWNER]=]FILE",
                        help="a witness's public key file (hex, as `keys generate` prints it) "
                             "or the hex itself; repeat for each witness")
    parser.add_argument("--threshold", type=int, required=True,
                        help="witnesses every ceremony needs, unless set per kind")
    parser.add_argument("--failover-threshold", type=int)
    parser.add_argument("--resume-threshold", type=int)
    parser.add_argument("--policy-threshold", type=int,
                        help="witnesses a policy change (witness rotation included) needs")
    parser.add_argument("--resume-wait", default="48h",
                        help="how long after a halt it may be resumed (default 48h)")
    parser.add_argument("--proposer", action="append", metavar="ROLE",
                        help="a database role whose members may open proposals "
                             "(default canonlog_operator); repeatable")


def register(sub: Any) -> None:
    """Adds `ledger init|adopt-policy` and `policy show|propose|approve|execute|status|sign`."""
    group = add_group(sub, "ledger", "a ledger's creation with its governance policy")
    p = add_ledger_and_actor(add_command(
        group, "init", cmd_ledger_init,
        "create a ledger with its governance policy (the administrator's connection)"))
    _policy_options(p)
    p = add_ledger_and_actor(add_command(
        group, "adopt-policy", cmd_adopt_policy,
        "give a ledger created before policies its governance policy, once (administrator)"))
    _policy_options(p)

    group = add_group(sub, "policy", "the governance policy and the ceremony that changes it")
    add_ledger_and_actor(add_command(group, "show", cmd_policy_show, "the policy in force"),
                         actor=False)
    p = add_ledger_and_actor(add_command(group, "propose", cmd_policy_propose,
                                         "propose a new policy (witnesses, thresholds, wait)"))
    _policy_options(p)
    p = add_ledger_and_actor(add_command(group, "approve", cmd_approve_proposal,
                                         "a witness signs a policy proposal's statement"))
    p.add_argument("--proposal", type=int, required=True)
    add_signing(p)
    p = add_ledger_and_actor(add_command(group, "execute", cmd_policy_execute,
                                         "put the proposed policy in force once approved",
                                         failed_verification=(TamperDetected,)))
    p.add_argument("--proposal", type=int, required=True)
    p = add_ledger_and_actor(add_command(group, "status", cmd_policy_status,
                                         "policy proposals and their approvals"), actor=False)
    p.add_argument("--proposal", type=int)
    p = add_command(group, "sign", cmd_policy_sign,
                    "sign a ceremony statement (hex, from `status`) offline with a key file")
    p.add_argument("--statement", required=True)
    p.add_argument("--key", required=True, help="the witness's private key file")
