"""`canonlog verify`: the chain of a database or of an export, held to signed checkpoints.

Both are verified the same way (verify_ledger, verify_exported): every hash
recomputed from genesis and compared with every trusted checkpoint on the way, in
ranges checked by parallel processes (--processes, CANONLOG_VERIFY_PROCESSES; one
per core by default) and joined at the end.
--from-checkpoint starts at the newest trusted checkpoint the database still
matches instead, and the output names the range it did not recompute. Exits 1
when a hash, a link or a checkpoint does not match (naming the first break), when
a checkpoint note names a trusted key whose signature fails, or when checkpoints
are required (--require-checkpoints, CANONLOG_REQUIRE_CHECKPOINTS) and none is trusted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canonlog.application.checkpoints import CheckpointReview
from canonlog.application.verification import (
    UNPROTECTED,
    VerificationReport,
    checkpoint_sequences,
    exported_verdict,
    verify_ledger,
)
from canonlog.application.verifier import ChainReport
from canonlog.infrastructure.bootstrap import chain_checker, open_event_log, trusted_checkpoints
from canonlog.infrastructure.cli.checkpoints import print_review, review_json
from canonlog.infrastructure.cli.progress import Progress
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    add_command,
    ledger_of,
    print_json,
    usage_error,
    with_checkpoint_dir,
)
from canonlog.infrastructure.export import export_events
from canonlog.infrastructure.parallel_verification import default_processes, verify_export_file
from canonlog.infrastructure.settings import Settings


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_checkpoint_dir(settings, args)
    required = args.require_checkpoints or settings.require_checkpoints
    if args.processes is not None and args.processes < 1:
        raise usage_error(f"--processes must be 1 or more, not {args.processes}")
    processes = args.processes or settings.verify_processes or default_processes()
    if args.export:
        path = Path(args.export)
        exported_ledger, _ = export_events(path)
        ledger = args.ledger or exported_ledger
        review = await _review(settings, args, ledger)
        trusted = review.heads() if review else ()
        progress = Progress(f"verifying export ({processes} processes)")
        chain, hashes = verify_export_file(path, ledger, processes=processes,
                                           watch=checkpoint_sequences(trusted),
                                           progress=progress)
        progress.finish()
        verification = exported_verdict(
            chain, hashes, trusted=trusted,
            tamper_evidence=review.tamper_evidence() if review else (),
            require_checkpoints=required)
        return _show(args, verification, review)
    ledger = ledger_of(settings, args)
    review = await _review(settings, args, ledger)
    async with open_event_log(settings) as (log, connections):
        await log.ledger_state(ledger)  # LedgerNotFound before anything is read
        total = None
        if not args.from_checkpoint:  # every event up to the head (or --until) is recomputed
            head = (await log.head(ledger)).sequence
            total = head if args.until is None else min(head, args.until)
        progress = Progress(f"verifying ({processes} processes)", total)
        verification = await verify_ledger(
            log, ledger, trusted=review.heads() if review else (),
            tamper_evidence=review.tamper_evidence() if review else (),
            require_checkpoints=required, from_genesis=not args.from_checkpoint,
            until=args.until, progress=progress,
            checker=chain_checker(settings, connections.dsn, processes))
        progress.finish()
    return _show(args, verification, review)


async def _review(settings: Settings, args: argparse.Namespace,
                  ledger: str) -> CheckpointReview | None:
    """The configured checkpoints of the ledger, or None when none are consulted."""
    trusted = None if args.no_checkpoints else trusted_checkpoints(settings, ledger)
    return await trusted.review(ledger) if trusted is not None else None


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


def _show(args: argparse.Namespace, verification: VerificationReport,
          review: CheckpointReview | None) -> int:
    chain, comparison, coverage = (verification.chain, verification.checkpoints,
                                   verification.coverage)
    if args.json:
        print_json({**chain_json(chain), "ok": verification.ok,
                    "verified_from": coverage.start.sequence,
                    "not_recomputed": coverage.not_recomputed(),
                    "policy_not_checked": coverage.policy_not_checked(),
                    "checkpoints_consulted": review is not None,
                    "checkpoints_required": verification.checkpoints_required,
                    "unprotected": UNPROTECTED if verification.unprotected else None,
                    "problems": verification.problems(),
                    **(review_json(review, comparison) if review is not None else {})})
        return EXIT_OK if verification.ok else EXIT_VERIFY_FAILED
    print_chain(chain)
    gap = coverage.not_recomputed()
    if gap is not None:
        print(f"  NOT RECOMPUTED: {gap} (verify without --from-checkpoint recomputes them)")
    unchecked = coverage.policy_not_checked()
    if unchecked is not None:
        print(f"  POLICY NOT CHECKED: {unchecked}")
    if review is not None:
        print_review(review, comparison)
    elif verification.unprotected:
        print(f"checkpoints: not consulted; {UNPROTECTED}")
    for reason in verification.tamper_evidence:
        print(f"tamper evidence: {reason}")
    if verification.checkpoints_required and verification.unprotected:
        print("checkpoints are required: verification fails")
    return EXIT_OK if verification.ok else EXIT_VERIFY_FAILED


def register(sub: Any) -> None:
    """Adds verify to the `canonlog` parser."""
    p = add_command(sub, "verify", cmd_verify,
                    "recompute every hash and name the first broken link (database or export)")
    p.add_argument("--ledger")
    p.add_argument("--until", type=int, help="verify up to this sequence only")
    p.add_argument("--export", help="verify this JSON Lines export instead of the database, "
                                    "held to the same checkpoints")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="incremental: recompute only from the newest trusted checkpoint the "
                        "database still matches (the output names the range not recomputed)")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="check the chain alone, not against signed checkpoints")
    p.add_argument("--require-checkpoints", action="store_true",
                   help="fail when no trusted checkpoint is found "
                        "(default: CANONLOG_REQUIRE_CHECKPOINTS)")
    p.add_argument("--checkpoint-dir", help="checkpoint directory (default: CANONLOG_CHECKPOINT_DIR)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="check ranges of the ledger in N processes (default: "
                        "CANONLOG_VERIFY_PROCESSES, else the cores)")
