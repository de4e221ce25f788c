"""`canonlog keys add | revoke | list | generate`: agent keys, and key files.

Witness keys are the ledger's governance policy's (`canonlog policy propose`).

`keys generate` and `checkpoint keygen` are one command (add_keygen) under two
names: both write a new Ed25519 private key file and print its public key; they
differ only in the next step they suggest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canonlog.infrastructure.cli.support import (
    actor_of,
    add_command,
    add_group,
    add_ledger_and_actor,
    governed_log,
    ledger_log,
    render,
)
from canonlog.infrastructure.keyfiles import generate_key_file, parse_public_key
from canonlog.infrastructure.settings import Settings


async def cmd_keygen(settings: Settings, args: argparse.Namespace) -> int:
    public = generate_key_file(Path(args.out)).hex()
    code = render(args, {"file": args.out, "public_key": public}, public)
    if not args.json:
        print(f"private key written to {args.out}; {args.next_step.format(public)}",
              file=sys.stderr)
    return code


def add_keygen(group: Any, name: str, help_text: str, *, out_help: str, next_step: str) -> None:
    """Adds the key-file command as group's name; next_step ({} for the public key hex)
    follows "private key written to FILE; " on stderr."""
    p = add_command(group, name, cmd_keygen, help_text)
    p.set_defaults(next_step=next_step)
    p.add_argument("--out", required=True, help=out_help)


async def cmd_keys_add(settings: Settings, args: argparse.Namespace) -> int:
    public_key = parse_public_key(args.public_key)
    async with governed_log(settings, args) as (log, ledger):
        sequence = await log.add_key(ledger, args.key_id, args.purpose, args.owner, public_key,
                                     actor_of(settings, args))
    return render(args, {"ledger_id": ledger, "key_id": args.key_id, "purpose": args.purpose,
                         "owner_id": args.owner, "public_key": public_key.hex(),
                         "sequence": sequence},
                  f"key {args.key_id} ({args.purpose} of {args.owner}) registered in ledger "
                  f"{ledger} at sequence {sequence}")


async def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async with governed_log(settings, args) as (log, ledger):
        sequence = await log.revoke_key(ledger, args.key_id, actor_of(settings, args), args.reason)
    return render(args, {"ledger_id": ledger, "key_id": args.key_id, "sequence": sequence},
                  f"key {args.key_id} revoked in ledger {ledger} at sequence {sequence}")


async def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async with ledger_log(settings, args) as (log, ledger):
        keys = await log.list_keys(ledger)
    lines = [f"{k.key_id}  {k.purpose:7}  {k.owner_id}  {k.public_key.hex()}  added at "
             f"#{k.added_seq}, " + (f"revoked at #{k.revoked_seq}" if k.revoked_seq else "active")
             for k in keys]
    return render(args, [{"key_id": k.key_id, "purpose": k.purpose, "owner_id": k.owner_id,
                          "public_key": k.public_key.hex(), "added_seq": k.added_seq,
                          "revoked_seq": k.revoked_seq} for k in keys],
                  "\n".join(lines) or f"ledger {ledger} has no registered keys")


def register(sub: Any) -> None:
    """Adds `canonlog keys add|revoke|list|generate`."""
    group = add_group(sub, "keys", "agents' Ed25519 public keys, each change chained")
    p = add_command(group, "add", cmd_keys_add, "register a public key")
    add_ledger_and_actor(p)
    p.add_argument("--key-id", required=True)
    p.add_argument("--purpose", default="agent", choices=["agent", "witness"],
                   help="agent (witness keys change only through a policy ceremony)")
    p.add_argument("--owner", required=True, help="the agent id it belongs to")
    p.add_argument("--public-key", required=True, help="32-byte Ed25519 public key as hex")
    p = add_command(group, "revoke", cmd_keys_revoke,
                    "revoke a key: events it signs from now on are refused")
    add_ledger_and_actor(p)
    p.add_argument("--key-id", required=True)
    p.add_argument("--reason", required=True)
    add_ledger_and_actor(add_command(group, "list", cmd_keys_list,
                                     "every key, revoked ones included"), actor=False)
    add_keygen(group, "generate",
               "write a new private key file (mode 0600) and print its public key",
               out_help="file to create; never overwritten",
               next_step="register the public key with canonlog keys add --public-key {} ...")

