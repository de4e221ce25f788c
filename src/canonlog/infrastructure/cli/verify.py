"""`canonlog verify`: the chain of a database (held to signed checkpoints) or of an export.

The database is verified by the verify_ledger use case: from the newest trusted
checkpoint the database still matches when checkpoints are configured (from
genesis with --full), else from genesis. Exits 1 when a hash, a link or a
checkpoint does not match, naming the first break.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canonlog.application.checkpoints import CheckpointReview
from canonlog.application.verification import VerificationReport, verify_ledger
from canonlog.application.verifier import ChainReport
from canonlog.infrastructure.bootstrap import trusted_checkpoints
from canonlog.infrastructure.cli.checkpoints import print_review, review_json
from canonlog.infrastructure.cli.progress import Progress
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    add_command,
    ledger_log,
    ledger_of,
    print_json,
    with_checkpoint_dir,
)
from canonlog.infrastructure.export import verify_export
from canonlog.infrastructure.settings import Settings


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.export:
        progress = Progress("verifying export")
        chain = verify_export(Path(args.export), progress=progress)
        progress.finish()
        return _show_chain(args, chain)
    settings = with_checkpoint_dir(settings, args)
    ledger = ledger_of(settings, args)
    trusted = None if args.no_checkpoints else trusted_checkpoints(settings, ledger)
    review = await trusted.review(ledger) if trusted is not None else None
    from_genesis = args.full or review is None
    async with ledger_log(settings, args, must_exist=True) as (log, _):
        total = None
        if from_genesis:  # every event up to the head (or --until) is recomputed
            head = (await log.head(ledger)).sequence
            total = head if args.until is None else min(head, args.until)
        progress = Progress("verifying", total)
        verification = await verify_ledger(log, ledger, trusted=review.heads() if review else (),
                                           from_genesis=from_genesis, until=args.until,
                                           progress=progress)
        progress.finish()
    if review is None:
        return _show_chain(args, verification.chain)
    return _show_verification(args, verification, review)


def chain_json(report: ChainReport) -> dict[str, Any]:
    """The chain's verification as JSON fields."""
    return {
        "ok": report.ok,
        "ledger_id": report.ledger_id,
        "events_checked": report.events_checked,
        "last_sequence": report.last_sequence,
        "head_hash": report.head_hash.hex(),
        "breaks_total": report.breaks_total,
        "breaks": [
            {"sequence": b.sequence, "kind": b.kind, "message": b.message,
             "expected": b.expected, "found": b.found} for b in report.breaks
        ],
    }


def print_chain(report: ChainReport) -> None:
    """Prints the chain's verification and its first ten breaks."""
    print(report.summary())
    for item in report.breaks[:10]:
        line = f"  #{item.sequence} {item.kind}: {item.message}"
        if item.expected is not None:
            line += f" (expected {item.expected}, found {item.found})"
        print(line)


def _show_chain(args: argparse.Namespace, report: ChainReport) -> int:
    if args.json:
        print_json(chain_json(report))
    else:
        print_chain(report)
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


def _show_verification(args: argparse.Namespace, verification: VerificationReport,
                       review: CheckpointReview) -> int:
    chain, comparison, coverage = (verification.chain, verification.checkpoints,
                                   verification.coverage)
    if args.json:
        print_json({**chain_json(chain), "ok": verification.ok,
                    "verified_from": coverage.start.sequence,
                    **review_json(review, comparison)})
    else:
        print_chain(chain)
        if coverage.mode == "checkpoint":
            print(f"  chain verified from checkpoint #{coverage.start.sequence} "
                  f"{coverage.start.hash.hex()} on (--full verifies from genesis)")
        print_review(review, comparison)
    return EXIT_OK if verification.ok else EXIT_VERIFY_FAILED


def register(sub: Any) -> None:
    """Adds verify to the `canonlog` parser."""
    p = add_command(sub, "verify", cmd_verify,
                    "recompute every hash and name the first broken link (database or export)")
    p.add_argument("--ledger")
    p.add_argument("--until", type=int, help="verify up to this sequence only")
    p.add_argument("--export", help="verify this JSON Lines export, with no database")
    p.add_argument("--full", action="store_true",
                   help="verify the whole chain, not only from the newest trusted checkpoint")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="check the chain alone, not against signed checkpoints")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
