"""Verification attacked as an attacker would: a PostgreSQL superuser editing history, and
anyone who can create a file in the checkpoint directory.

Every test runs the real `canonlog` command (or canonlog.open()) against a real
PostgreSQL. A superuser edits or deletes rows deep inside checkpointed history,
forges and plants notes, cosignatures, directories, FIFOs and junk next to the
genuine checkpoints, and cuts or rewrites exports; verification must still fail
where history changed, and never hang or give up because of a stray file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import canonlog
from canonlog.application.verification import UNPROTECTED
from canonlog.domain.checkpoint import Checkpoint, cosign, parse_checkpoint, sign_checkpoint
from canonlog.domain.events import Head
from canonlog.infrastructure.bootstrap import configure_logging, trusted_checkpoints
from canonlog.infrastructure.keyfiles import generate_key_file
from canonlog.infrastructure.settings import Settings
from tests.acceptance.conftest import ORIGIN, WHEN, hash_at, publish
from tests.support.ledgers import EDIT_PAYLOADS, REWRITE_CHAIN, append_events, as_superuser

EDIT_ONE = ("UPDATE canonlog.events SET payload = convert_to('{\"amount\":999}', 'UTF8') "
            "WHERE ledger_id = 'main' AND seq = 3")
DELETE_ONE = "DELETE FROM canonlog.events WHERE ledger_id = 'main' AND seq = 4"


def note_path(checkpoint_dir: Path, sequence: int, suffix: str = "checkpoint") -> Path:
    return checkpoint_dir / "main" / f"{sequence:020d}.{suffix}"


# -- history edited under a checkpoint ------------------------------------------------------


@pytest.mark.parametrize(("attack", "sequence", "kind"), [
    (EDIT_ONE, 3, "stored hash does not match the hash recomputed from the event"),
    (DELETE_ONE, 4, "sequence 4 is missing: 5 follows 3"),
])
async def test_an_edit_or_a_deletion_deep_in_checkpointed_history_fails_verify_and_publish(
        database, cli, key_file, attack, sequence, kind):
    await append_events(database.app.uri(), 10)  # 1..12
    await publish(cli, key_file)
    assert (await cli.ok("verify")).stdout.startswith("ledger main: 12 events verified")

    await as_superuser(database.admin.uri(), attack)
    result = await cli("verify")
    assert result.code == 1, result
    assert result.lines()[0].startswith(f"ledger main: chain broken at sequence {sequence}: {kind}")
    # The incremental mode does not see it, and says which range it did not recompute.
    incremental = await cli.ok("verify", "--from-checkpoint")
    assert ("  NOT RECOMPUTED: sequences 1..12 were not recomputed: checkpoint #12 vouches only "
            "for the hash stored there, so an edit or a deletion before it is not detected "
            "(verify without --from-checkpoint recomputes them)") in incremental.lines()
    # Publishing verifies first: no "already published" over the edited history.
    refused = await cli("checkpoint", "publish",
                        env={"CANONLOG_CHECKPOINT_KEY_FILE": str(key_file[0])})
    assert refused.code == 3, refused
    assert refused.stderr.startswith(f"canonlog: TamperDetected: no checkpoint signed: the chain "
                                     f"is broken at sequence {sequence}: {kind}")
    assert refused.stdout == ""


# -- evidence that fails counts ---------------------------------------------------------------


async def test_a_forged_note_under_the_trusted_key_is_tamper_evidence(
        database, tmp_path, cli, key_file, checkpoint_dir):
    await append_events(database.app.uri(), 5)  # 1..7
    await publish(cli, key_file)
    genuine = note_path(checkpoint_dir, 7).read_bytes()
    # The body changed under the genuine signature line: the trusted key's signature fails.
    other = base64.b64encode(bytes(32)).decode().encode()
    lines = genuine.split(b"\n")
    forged = b"\n".join([lines[0], b"5", other, *lines[3:]])
    note_path(checkpoint_dir, 5).write_bytes(forged)
    # A note by a key nobody trusts is only ignored.
    stranger = sign_checkpoint(Checkpoint.of(Head("main", 6, bytes(32)), ORIGIN, WHEN), ORIGIN,
                               Ed25519PrivateKey.generate())
    note_path(checkpoint_dir, 6).write_bytes(stranger.note())

    result = await cli("verify")
    assert result.code == 1, result
    assert result.lines()[0].startswith("ledger main: 7 events verified")
    location = note_path(checkpoint_dir, 5)
    assert (f"FORGED checkpoint {location}: signature by {ORIGIN} does not verify"
            in result.lines())
    assert (f"tamper evidence: checkpoint {location}: signature by {ORIGIN} does not verify"
            in result.lines())
    assert any(line.startswith(f"  ignored checkpoint {note_path(checkpoint_dir, 6)}: not signed "
                               f"by a trusted checkpoint key") for line in result.lines())
    as_json = (await cli("verify", "--json")).json()
    assert as_json["ok"] is False
    assert as_json["forged_checkpoints"] == [
        {"location": str(location), "reason": f"signature by {ORIGIN} does not verify"}]
    assert (await cli("checkpoint", "verify")).code == 1
    await cli.ok("export", "-o", str(tmp_path / "export.jsonl"))
    assert (await cli("verify", "--export", str(tmp_path / "export.jsonl"))).code == 1

    location.unlink()
    assert (await cli.ok("verify")).code == 0


async def test_without_a_trusted_checkpoint_the_verdict_says_so_and_can_be_required(
        database, cli, checkpoint_dir):
    await append_events(database.app.uri(), 3)
    for found in ("none", "none trusted"):
        if found == "none trusted":
            stranger = sign_checkpoint(Checkpoint.of(Head("main", 2, bytes(32)), ORIGIN, WHEN),
                                       ORIGIN, Ed25519PrivateKey.generate())
            note_path(checkpoint_dir, 2).parent.mkdir(parents=True)
            note_path(checkpoint_dir, 2).write_bytes(stranger.note())
        plain = await cli.ok("verify")
        assert any(UNPROTECTED in line for line in plain.lines()), (found, plain)
        required = await cli("verify", "--require-checkpoints")
        assert required.code == 1, (found, required)
        assert "checkpoints are required: verification fails" in required.lines()
        by_setting = await cli("verify", env={"CANONLOG_REQUIRE_CHECKPOINTS": "true"})
        assert by_setting.code == 1, (found, by_setting)
        assert by_setting.stdout == required.stdout
        as_json = (await cli("verify", "--json", "--require-checkpoints")).json()
        assert as_json["ok"] is False and as_json["unprotected"] == UNPROTECTED
    unconfigured = await cli("verify", "--require-checkpoints",
                             drop_env=("CANONLOG_CHECKPOINT_DIR",))
    assert unconfigured.code == 1, unconfigured
    assert f"checkpoints: not consulted; {UNPROTECTED}" in unconfigured.lines()


async def test_an_export_is_held_to_the_same_checkpoints(database, tmp_path, cli, key_file):
    first = await append_events(database.app.uri(), 5)  # 1..7
    await publish(cli, key_file)
    second = await append_events(database.app.uri(), 5)  # 8..14
    await publish(cli, key_file)
    export = tmp_path / "export.jsonl"
    await cli.ok("export", "-o", str(export))
    assert (await cli.ok("verify", "--export", str(export))).lines()[0].startswith(
        "ledger main: 14 events verified, head 14")

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(export.read_text().splitlines(keepends=True)[:10]))
    result = await cli("verify", "--export", str(cut))
    assert result.code == 1, result
    tenth = await hash_at(database.app.uri(), 10)
    assert (f"checkpoint mismatch: export head #10 {tenth.hex()} is behind checkpoint #14 "
            f"{second.hash.hex()}: the export was cut short or taken earlier; the last "
            f"checkpointed sequence that still matches is 7") in result.lines()
    assert (await cli.ok("verify", "--export", str(cut), "--no-checkpoints")).code == 0
    retyped = tmp_path / "retyped.jsonl"
    lines = export.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace('"sequence":5,', '"sequence":"5",')
    retyped.write_text("".join(lines))
    malformed = await cli("verify", "--export", str(retyped))
    assert (malformed.code, malformed.stderr.splitlines()[-1]) == (
        1, "canonlog: line 5: field 'sequence' is a string, expected an integer"), malformed
    assert "Traceback" not in malformed.stderr

    await as_superuser(database.admin.uri(), EDIT_PAYLOADS, REWRITE_CHAIN)
    rewritten = tmp_path / "rewritten.jsonl"
    await cli.ok("export", "-o", str(rewritten))
    result = await cli("verify", "--export", str(rewritten))
    assert result.code == 1, result
    assert result.lines()[0].startswith("ledger main: 14 events verified")  # the chain holds
    new_seventh = await hash_at(database.app.uri(), 7)
    assert (f"checkpoint mismatch: hash at sequence 7 is {new_seventh.hex()} in the export but "
            f"{first.hash.hex()} in checkpoint #7: the chain was rewritten or replaced; the last "
            f"checkpointed sequence that still matches is 0") in result.lines()


# -- stray files cannot silence the checkpoints ---------------------------------------------------


async def test_stray_cosignatures_cannot_make_a_genuine_checkpoint_unreadable(
        database, tmp_path, cli, key_file, checkpoint_dir):
    await append_events(database.app.uri(), 5)  # 1..7
    await publish(cli, key_file)
    genuine = parse_checkpoint(note_path(checkpoint_dir, 7).read_bytes())
    witness_key = tmp_path / "witness.key"
    witness_public = generate_key_file(witness_key).hex()
    await cli.ok("checkpoint", "cosign", "--witness-key", str(witness_key),
                 "--witness-name", "w1", "--state", str(tmp_path / "w1.json"))
    # Planted beside it: junk, an empty file, a bad line claiming the ledger's own key
    # (with its key ID), and a bad line claiming the witness.
    signer_id = genuine.signatures[0].key_id
    bad_signer = f"\u2014 {ORIGIN} {base64.b64encode(signer_id + bytes(64)).decode()}\n"
    good_witness = cosign(genuine, "w1", Ed25519PrivateKey.generate(), 5).line()
    planted = {"junk": b"\x00\xffnot a line at all", "empty": b"",
               "signer": bad_signer.encode(), "fake%2dw1": good_witness.encode()}
    for name, content in planted.items():
        note_path(checkpoint_dir, 7, f"{name}.cosignature").write_bytes(content)
    witnessed = {"CANONLOG_WITNESS_KEYS": f"w1={witness_public}",
                 "CANONLOG_CHECKPOINT_WITNESSES_REQUIRED": "1"}
    listing = await cli.ok("checkpoint", "verify", env=witnessed)
    assert listing.lines()[0].startswith("trusted #7 ") and listing.lines()[0].endswith(
        f"signed by {ORIGIN}; cosigned by w1")
    ignored = [line for line in listing.lines() if line.startswith("  ignored checkpoint ")]
    assert len(ignored) == len(planted), listing

    await as_superuser(database.admin.uri(), EDIT_PAYLOADS, REWRITE_CHAIN)
    result = await cli("verify", env=witnessed)
    assert result.code == 1, result
    assert any(line.startswith("checkpoint mismatch: hash at sequence 7 is ")
               for line in result.lines())


async def test_directories_fifos_symlinks_and_huge_files_are_ignored_never_opened_blocking(
        database, tmp_path, cli, key_file, checkpoint_dir):
    await append_events(database.app.uri(), 5)  # 1..7
    await publish(cli, key_file)
    note_path(checkpoint_dir, 20).mkdir()
    os.mkfifo(note_path(checkpoint_dir, 21))
    note_path(checkpoint_dir, 22).symlink_to(note_path(checkpoint_dir, 20))
    note_path(checkpoint_dir, 23).symlink_to(note_path(checkpoint_dir, 21))
    note_path(checkpoint_dir, 24).write_bytes(b"x" * 100_000)
    os.mkfifo(note_path(checkpoint_dir, 7, "w1.cosignature"))
    (checkpoint_dir / "main" / "not-a-sequence.checkpoint").write_bytes(b"junk\n")

    result = await asyncio.wait_for(cli("verify"), 60)  # a blocking open would hang here
    assert result.code == 0, result
    reasons = {line.split(": ", 1)[0].rsplit("/", 1)[1]: line.split(": ", 1)[1]
               for line in result.lines() if line.startswith("  ignored checkpoint ")}
    assert reasons == {
        "00000000000000000020.checkpoint": "it is a directory, not a regular file",
        "00000000000000000021.checkpoint": "it is a FIFO, not a regular file",
        "00000000000000000022.checkpoint": "it is a directory, not a regular file",
        "00000000000000000023.checkpoint": "it is a FIFO, not a regular file",
        "00000000000000000024.checkpoint": "it is 100000 bytes; at most 65536 are read",
        "00000000000000000007.w1.cosignature": "it is a FIFO, not a regular file",
        "not-a-sequence.checkpoint": "not a checkpoint note: note has no blank line between the "
                                     "checkpoint and its signatures",
    }, result.stdout
    assert "checkpoints: database matches all 1 trusted checkpoint(s), newest #7" in result.lines()

    # A writer starts, publishes and stops beside them without hanging.
    settings = Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                        data_dir=tmp_path / "writer", checkpoint_dir=checkpoint_dir,
                        checkpoint_key_file=key_file[0], checkpoint_every_events=1)

    async def write_one() -> None:
        async with canonlog.open(settings) as ledger:
            await ledger.append("after", [canonlog.event("deposited", {"amount": 1})])

    await asyncio.wait_for(write_one(), 60)
    heads = await trusted_checkpoints(settings, "main").heads("main")
    assert max(h.sequence for h in heads) > 7


async def test_junk_with_a_huge_sequence_does_not_stop_the_publisher(
        database, tmp_path, key_file, checkpoint_dir, capfd):
    await append_events(database.app.uri(), 2)  # 1..4
    checkpoint_dir.joinpath("main").mkdir(parents=True)
    note_path(checkpoint_dir, 99_999_999_999_999_999).write_bytes(b"junk\n")
    stranger = sign_checkpoint(Checkpoint.of(Head("main", 10**18, bytes(32)), ORIGIN, WHEN),
                               ORIGIN, Ed25519PrivateKey.generate())
    note_path(checkpoint_dir, 10**18).write_bytes(stranger.note())
    settings = Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                        data_dir=tmp_path / "writer", checkpoint_dir=checkpoint_dir,
                        checkpoint_key_file=key_file[0], checkpoint_every_events=2,
                        checkpoint_every_seconds=3600, tail_events=3, log_format="json")
    trusted = trusted_checkpoints(settings, "main")

    async def newest() -> int:
        head = await trusted.newest("main")
        return head.sequence if head else 0

    before = structlog.get_config()
    configure_logging(settings)  # JSON at info, whatever an earlier test set up
    try:
        async with canonlog.open(settings) as ledger:  # its grant is sequence 5
            for i in range(4):
                await ledger.append(f"s-{i}", [canonlog.event("deposited", {"amount": i})])
            for _ in range(200):  # published in the background, not only at the stop
                if await newest() >= 7:
                    break
                await asyncio.sleep(0.05)
            assert await newest() >= 7
            head = await ledger.head()
    finally:
        structlog.configure(**before)
    assert await newest() == head.sequence == 9
    # Startup stays incremental and says what it did not check.
    captured = capfd.readouterr()
    logged = [json.loads(line) for line in (captured.out + captured.err).splitlines()
              if line.startswith("{")]
    (passed,) = [e for e in logged if e["event"] == "startup verification passed"]
    assert passed["not_checked"] == (
        "sequences 1..1 were not recomputed: only the last 3 events were recomputed, linked to "
        "the store's own hash at #1; the governance policy was not checked up to #1: the "
        "policy, keys and halt in force there were read from the ledger's own events before "
        "it, each against its own hash but not linked to a trusted checkpoint, and the "
        f"ceremonies and key changes before it were not replayed; {UNPROTECTED}")
