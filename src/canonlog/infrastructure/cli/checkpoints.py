"""`canonlog checkpoint keygen | create | publish | verify | cosign`: signed checkpoints.

Checkpoint settings come from CANONLOG_CHECKPOINT_* (docs/reference/checkpoints.md);
``--checkpoint-dir`` replaces CANONLOG_CHECKPOINT_DIR for one command. The review of
trusted checkpoints is rendered here for `canonlog verify` too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canonlog.application.checkpoints import CheckpointReview, create_checkpoint, publish_checkpoint
from canonlog.application.verification import (
    UNPROTECTED,
    CheckpointComparison,
    check_against_checkpoints,
)
from canonlog.domain.checkpoint import parse_checkpoint, verify_checkpoint
from canonlog.domain.errors import CheckpointFormatError
from canonlog.domain.events import Head
from canonlog.infrastructure.bootstrap import (
    checkpoint_signer,
    checkpoint_stores,
    checkpoint_witness,
    trusted_checkpoints,
    trusted_signer_keys,
    trusted_witness_keys,
)
from canonlog.infrastructure.cli.keys import add_keygen
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    add_command,
    add_group,
    ledger_log,
    ledger_of,
    print_json,
    render,
    usage_error,
    with_checkpoint_dir,
)
from canonlog.infrastructure.export import read_export
from canonlog.infrastructure.settings import Settings

_NO_KEY_FILE = "set CANONLOG_CHECKPOINT_KEY_FILE to the checkpoint signing key"
_NO_DIRECTORY = "set CANONLOG_CHECKPOINT_DIR (or --checkpoint-dir) to {} checkpoints"


async def _trusted_heads(settings: Settings, ledger: str) -> list[Head]:
    trusted = trusted_checkpoints(settings, ledger)
    return await trusted.heads(ledger) if trusted is not None else []


async def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    ledger = ledger_of(settings, args)
    signer = checkpoint_signer(settings, ledger)
    if signer is None:
        raise usage_error(_NO_KEY_FILE)
    trusted = await _trusted_heads(settings, ledger)
    async with ledger_log(settings, args, must_exist=True) as (log, _):
        signed = await create_checkpoint(log, ledger, signer, origin=settings.origin_for(ledger),
                                         trusted=trusted)
    if args.output == "-":
        sys.stdout.write(signed.note().decode("utf-8"))
    else:
        # Blocking file I/O is fine in a command: this process does nothing else meanwhile.
        Path(args.output).write_bytes(signed.note())  # noqa: ASYNC240
        print(f"checkpoint #{signed.checkpoint.sequence} of {ledger} written to {args.output}",
              file=sys.stderr)
    return EXIT_OK


async def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_checkpoint_dir(settings, args)
    ledger = ledger_of(settings, args)
    signer = checkpoint_signer(settings, ledger)
    if signer is None:
        raise usage_error(_NO_KEY_FILE)
    stores = checkpoint_stores(settings)
    if not stores:
        raise usage_error(_NO_DIRECTORY.format("publish"))
    trusted = await _trusted_heads(settings, ledger)
    async with ledger_log(settings, args, must_exist=True) as (log, _):
        published = await publish_checkpoint(log, ledger, signer, stores,
                                              origin=settings.origin_for(ledger), trusted=trusted)
    head = published.checkpoint.checkpoint.head
    verb = "published" if published.new else "already published"
    return render(args, {"ledger_id": ledger, "sequence": head.sequence, "hash": head.hash.hex(),
                         "locations": list(published.locations), "new": published.new,
                         "note": published.checkpoint.note().decode("utf-8")},
                  f"checkpoint #{head.sequence} {head.hash.hex()} of {ledger} {verb}: "
                  + ", ".join(published.locations))


async def cmd_verify_checkpoints(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_checkpoint_dir(settings, args)
    ledger = ledger_of(settings, args)
    if args.files:
        return _verify_files(settings, ledger, [Path(f) for f in args.files], args.json)
    trusted = trusted_checkpoints(settings, ledger)
    if trusted is None:
        raise usage_error(_NO_DIRECTORY.format("verify"))
    review = await trusted.review(ledger)
    comparison = None
    if not args.offline:
        async with ledger_log(settings, args, must_exist=True) as (log, _):
            comparison = await check_against_checkpoints(log, ledger, review.heads())
    if args.json:
        print_json({"ledger_id": ledger, **review_json(review, comparison)})
    else:
        for item in review.trusted:
            cosigners = ", ".join(name for name, _ in item.verification.cosigned_by)
            print(f"trusted #{item.head.sequence} {item.head.hash.hex()} {item.location}: signed "
                  f"by {', '.join(item.verification.signed_by)}"
                  + (f"; cosigned by {cosigners}" if cosigners else ""))
        print_review(review, comparison)
    ok = (comparison is None or comparison.ok) and not review.forged
    return EXIT_OK if ok else EXIT_VERIFY_FAILED


def _verify_files(settings: Settings, ledger: str, paths: list[Path], as_json: bool) -> int:
    signers = trusted_signer_keys(settings, ledger)
    witnesses = trusted_witness_keys(settings)
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            signed = parse_checkpoint(path.read_bytes())
        except CheckpointFormatError as exc:
            results.append({"file": str(path), "trusted": False, "problem": str(exc)})
            continue
        verification = verify_checkpoint(signed, signers, witnesses)
        head = signed.checkpoint.head
        results.append({"file": str(path), "trusted": verification.trusted,
                        "problem": verification.problem(), "ledger_id": head.ledger_id,
                        "sequence": head.sequence, "hash": head.hash.hex(),
                        "signed_by": list(verification.signed_by),
                        "cosigned_by": [n for n, _ in verification.cosigned_by],
                        "unknown": list(verification.unknown)})
    if as_json:
        print_json(results)
    else:
        for item in results:
            if item["trusted"]:
                print(f"trusted {item['file']}: #{item['sequence']} {item['hash']} signed by "
                      f"{', '.join(item['signed_by'])}"
                      + (f"; cosigned by {', '.join(item['cosigned_by'])}"
                         if item["cosigned_by"] else ""))
            else:
                print(f"NOT trusted {item['file']}: {item['problem']}")
    return EXIT_OK if all(item["trusted"] for item in results) else EXIT_VERIFY_FAILED


async def cmd_cosign(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_checkpoint_dir(settings, args)
    ledger = ledger_of(settings, args)
    stores = checkpoint_stores(settings)
    if args.note:
        note = Path(args.note).read_bytes()  # noqa: ASYNC240 (a command does nothing else meanwhile)
    else:
        if not stores:
            raise usage_error("give --note FILE or set CANONLOG_CHECKPOINT_DIR (or --checkpoint-dir)")
        stored = (await stores[0].load(ledger, args.sequence) if args.sequence is not None
                  else next(iter(await stores[0].list_checkpoints(ledger)), None))
        if stored is None:
            raise usage_error(f"no checkpoint of {ledger} to cosign in {settings.checkpoint_dirs[0]}")
        note = stored.note
    witness = checkpoint_witness(settings, ledger, name=args.witness_name,
                                 key_file=Path(args.witness_key), state_file=Path(args.state))
    if witness is None:
        raise usage_error("set CANONLOG_CHECKPOINT_PUBLIC_KEYS to the ledger's checkpoint key")
    if args.export:
        cosigned = await witness.cosign(note, events=read_export(Path(args.export)))
    else:
        async with ledger_log(settings, args) as (log, _):
            cosigned = await witness.cosign(note, reader=log)
    checkpoint = cosigned.checkpoint.checkpoint
    line = cosigned.cosignature.line().encode("utf-8")
    stored_at = []
    for store in stores:
        if await store.load(checkpoint.ledger_id, checkpoint.sequence) is not None:
            await store.add_cosignature(checkpoint.ledger_id, checkpoint.sequence,
                                        args.witness_name, line)
            stored_at.append(str(store))
    if args.json:
        print_json({"origin": checkpoint.origin, "sequence": checkpoint.sequence,
                    "hash": checkpoint.head_hash.hex(), "cosignature": line.decode("utf-8"),
                    "previous_sequence": cosigned.previous_sequence, "stored": stored_at,
                    "note": cosigned.checkpoint.note().decode("utf-8")})
    else:
        print(f"cosigned checkpoint #{checkpoint.sequence} of {checkpoint.origin} as "
              f"{args.witness_name} (extends #{cosigned.previous_sequence})", file=sys.stderr)
        sys.stdout.write(line.decode("utf-8"))
    return EXIT_OK


def review_json(review: CheckpointReview,
                comparison: CheckpointComparison | None) -> dict[str, Any]:
    """The checkpoints trusted and ignored, and how the database compares, as JSON fields."""
    data: dict[str, Any] = {
        "trusted_checkpoints": [
            {"sequence": t.head.sequence, "hash": t.head.hash.hex(), "location": t.location,
             "signed_by": list(t.verification.signed_by),
             "cosigned_by": [n for n, _ in t.verification.cosigned_by]}
            for t in review.trusted],
        "ignored_checkpoints": [{"location": i.location, "reason": i.reason}
                                for i in review.ignored],
        "forged_checkpoints": [{"location": i.location, "reason": i.reason}
                               for i in review.forged],
    }
    if comparison is not None:
        data.update({
            "checkpoints_ok": comparison.ok,
            "database_head": comparison.database_head.sequence,
            "newest_checkpoint": comparison.newest.sequence if comparison.newest else None,
            "last_matching_checkpoint": (comparison.last_matching.sequence
                                         if comparison.last_matching else 0),
            "uncovered_events": comparison.uncovered,
            "mismatches": [{"kind": m.kind, "message": m.message,
                            "checkpoint_sequence": m.checkpoint.sequence,
                            "checkpoint_hash": m.checkpoint.hash.hex(),
                            "database_sequence": m.database.sequence,
                            "database_hash": m.database.hash.hex()}
                           for m in comparison.mismatches],
        })
    return data


def print_review(review: CheckpointReview, comparison: CheckpointComparison | None) -> None:
    """Prints the checkpoints ignored, how the database compares, and what is not covered."""
    for item in review.ignored:
        print(f"  ignored checkpoint {item.location}: {item.reason}")
    for item in review.forged:
        print(f"FORGED checkpoint {item.location}: {item.reason}")
    if comparison is None:
        print(f"checkpoints: {len(review.trusted)} trusted, {len(review.ignored)} ignored")
        return
    newest = comparison.newest
    if comparison.ok:
        print(f"checkpoints: database matches all {comparison.checked} trusted checkpoint(s)"
              + (f", newest #{newest.sequence}" if newest else ""))
    for mismatch in comparison.mismatches:
        print(f"checkpoint mismatch: {mismatch.message}")
    if newest is None:
        print(f"  {UNPROTECTED} ({comparison.uncovered} events are not covered by a checkpoint)")
    elif comparison.uncovered:
        print(f"  {comparison.uncovered} events after checkpoint #{newest.sequence} are not yet "
              f"covered by a checkpoint")
    elif comparison.ok:
        print(f"  every event is covered by checkpoint #{newest.sequence}")


def register(sub: Any) -> None:
    """Adds `canonlog checkpoint keygen|create|publish|verify|cosign`."""
    group = add_group(sub, "checkpoint", "signed checkpoints kept outside the database")
    add_keygen(group, "keygen",
               "write a new Ed25519 checkpoint (or witness) key; print its public key hex",
               out_help="private key file to create (never overwritten)",
               next_step="trust the public key with CANONLOG_CHECKPOINT_PUBLIC_KEYS=<key name>={}")
    p = add_command(group, "create", cmd_create,
                    "sign a checkpoint of the database head and print it (not published)")
    p.add_argument("--ledger")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    p = add_command(group, "publish", cmd_publish,
                    "sign a checkpoint of the database head and publish it to every location")
    p.add_argument("--ledger")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
    p = add_command(group, "verify", cmd_verify_checkpoints,
                    "check checkpoint signatures and compare trusted checkpoints with the database")
    p.add_argument("--ledger")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
    p.add_argument("--offline", action="store_true", help="check signatures only, not the database")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="check these checkpoint notes' signatures instead")
    p = add_command(group, "cosign", cmd_cosign,
                    "as a witness, cosign a checkpoint that extends the last one it cosigned")
    p.add_argument("--ledger")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
    p.add_argument("--witness-key", required=True, help="the witness's private key file")
    p.add_argument("--witness-name", required=True, help="the witness's key name")
    p.add_argument("--state", required=True,
                   help="the witness's state file (last cosigned checkpoint per origin)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--sequence", type=int, help="the stored checkpoint to cosign (default: newest)")
    source.add_argument("--note", help="cosign this checkpoint note file")
    p.add_argument("--export", help="check the chain in this export instead of the database")
