"""Signed checkpoints end to end through the real `canonlog` command.

A superuser can cut off a ledger's tail, restore an older copy of the database,
or rewrite the whole chain with recomputed hashes; the chain alone sees none of
it. Each test publishes checkpoints with `canonlog checkpoint publish`, attacks
the database as a superuser, and shows `canonlog verify` failing with exit code
1 and a message naming the database's value, the checkpoint's value and the last
checkpointed sequence that still matches.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.domain.checkpoint import Checkpoint, sign_checkpoint
from canonlog.domain.events import Head
from canonlog.infrastructure.keyfiles import generate_key_file, load_private_key
from tests.acceptance.conftest import ORIGIN, WHEN, hash_at, publish
from tests.support.cli import Cli
from tests.support.ledgers import (
    EDIT_PAYLOADS,
    REWRITE_CHAIN,
    append_events,
    as_superuser,
    copy_database,
)
from tests.support.servers import drop


def behind(database: Head, checkpoint: Head, last: int) -> str:
    return (f"checkpoint mismatch: database head #{database.sequence} {database.hash.hex()} is "
            f"behind checkpoint #{checkpoint.sequence} {checkpoint.hash.hex()}: events were "
            f"removed or an older copy of the database was restored; the last checkpointed "
            f"sequence that still matches is {last}")


def differs(sequence: int, database: bytes, checkpoint: bytes, last: int) -> str:
    return (f"checkpoint mismatch: hash at sequence {sequence} is {database.hex()} in the database "
            f"but {checkpoint.hex()} in checkpoint #{sequence}: the chain was rewritten or "
            f"replaced; the last checkpointed sequence that still matches is {last}")


async def test_a_cut_off_tail_is_caught_against_checkpoints(database, tmp_path, checkpoint_dir):
    keygen = await Cli(database.app.uri(), database.admin.uri())(
        "checkpoint", "keygen", "--out", str(tmp_path / "cli.key"))
    assert keygen.code == 0, keygen
    public = keygen.lines()[0]
    assert len(bytes.fromhex(public)) == 32
    key = (tmp_path / "cli.key", public)
    cli = Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"),
        "CANONLOG_CHECKPOINT_DIR": str(checkpoint_dir),
        "CANONLOG_CHECKPOINT_PUBLIC_KEYS": f"{ORIGIN}={public}"})

    first = await append_events(database.app.uri(), 5)  # sequences 1..7
    assert (await publish(cli, key)).lines() == [
        f"checkpoint #7 {first.hash.hex()} of main published: "
        f"{checkpoint_dir / 'main' / '00000000000000000007.checkpoint'}"]
    second = await append_events(database.app.uri(), 5)  # 8..14
    await publish(cli, key)
    await append_events(database.app.uri(), 2)  # 15..18, not yet checkpointed
    before = await cli.ok("verify")
    assert "ledger main: 18 events verified, head 18 " in before.stdout
    assert "NOT RECOMPUTED" not in before.stdout
    assert "  4 events after checkpoint #14 are not yet covered by a checkpoint" in before.lines()
    incremental = await cli.ok("verify", "--from-checkpoint")
    assert "ledger main: 4 events verified, head 18 " in incremental.stdout
    assert ("  NOT RECOMPUTED: sequences 1..14 were not recomputed: checkpoint #14 vouches only "
            "for the hash stored there, so an edit or a deletion before it is not detected "
            "(verify without --from-checkpoint recomputes them)") in incremental.lines()
    assert "  POLICY NOT CHECKED: the governance policy was not checked up to #14" in (
        incremental.stdout)
    assert "POLICY NOT CHECKED" not in before.stdout
    as_json = (await cli.ok("verify", "--from-checkpoint", "--json")).json()
    assert as_json["policy_not_checked"].startswith("the governance policy was not checked up")
    assert (await cli.ok("verify", "--json")).json()["policy_not_checked"] is None

    await as_superuser(database.admin.uri(),
                       "DELETE FROM canonlog.events WHERE ledger_id = 'main' AND seq > 10")
    cut = Head("main", 10, await hash_at(database.app.uri(), 10))
    after = await cli("verify")
    assert after.code == 1, after
    assert behind(cut, second, 7) in after.lines()
    assert after.stdout.count("checkpoint mismatch:") == 1
    # The chain alone cannot tell: what is left still links up.
    assert (await cli.ok("verify", "--no-checkpoints")).stdout.startswith(
        f"ledger main: 10 events verified, head 10 {cut.hash.hex()}")


async def test_an_older_copy_of_the_database_is_caught_against_later_checkpoints(
        database, pg_admin, cli, key_file):
    first = await append_events(database.app.uri(), 5)  # 1..7
    await publish(cli, key_file)
    backup = await copy_database(pg_admin, database.admin)
    try:
        restored = cli.on(backup.as_user(database.app.user).uri(), backup.uri())
        second = await append_events(database.app.uri(), 5)  # 8..14
        await publish(cli, key_file)
        assert (await cli("verify")).code == 0

        result = await restored("verify")
        assert result.code == 1, result
        assert behind(first, second, 7) in result.lines()

        # Restored and written to again, the copy reaches #14 with another history.
        await append_events(backup.as_user(database.app.user).uri(), 10)
        result = await restored("verify")
        assert result.code == 1, result
        replaced = await hash_at(backup.as_user(database.app.user).uri(), 14)
        assert differs(14, replaced, second.hash, 7) in result.lines()
        assert "ledger main: 19 events verified, head 19 " in result.stdout
    finally:
        await drop(pg_admin, backup)


async def test_a_chain_rewritten_with_recomputed_hashes_is_caught_only_by_checkpoints(
        database, cli, key_file):
    first = await append_events(database.app.uri(), 5)
    await publish(cli, key_file)
    second = await append_events(database.app.uri(), 5)
    await publish(cli, key_file)

    await as_superuser(database.admin.uri(), EDIT_PAYLOADS, REWRITE_CHAIN)
    rewritten = {s: await hash_at(database.app.uri(), s) for s in (7, 14)}
    assert rewritten[7] != first.hash and rewritten[14] != second.hash

    # Without checkpoints, the rewritten chain verifies from genesis to its head.
    for bare in (await cli.ok("verify", "--no-checkpoints"),
                 await cli.ok("verify", drop_env=("CANONLOG_CHECKPOINT_DIR",))):
        assert bare.lines()[0] == f"ledger main: 14 events verified, head 14 {rewritten[14].hex()}"
    result = await cli("verify")
    assert result.code == 1, result
    assert differs(7, rewritten[7], first.hash, 0) in result.lines()
    assert differs(14, rewritten[14], second.hash, 0) in result.lines()
    assert result.lines()[0].startswith("ledger main: 14 events verified")  # from genesis
    refused = await cli("checkpoint", "publish",
                        env={"CANONLOG_CHECKPOINT_KEY_FILE": str(key_file[0])})
    assert refused.code == 3, refused
    assert refused.stderr.strip() == "canonlog: TamperDetected: no checkpoint signed: " + differs(
        7, rewritten[7], first.hash, 0).removeprefix("checkpoint mismatch: ")


async def test_notes_are_checked_ignored_ones_reported_and_witnesses_cosign_only_extensions(
        database, tmp_path, cli, key_file, checkpoint_dir):
    signing = {"CANONLOG_CHECKPOINT_KEY_FILE": str(key_file[0])}
    first = await append_events(database.app.uri(), 3)  # 1..5
    created = await cli.ok("checkpoint", "create", "-o", str(tmp_path / "note"), env=signing)
    assert "checkpoint #5 of main written to" in created.stderr
    checked = await cli.ok("checkpoint", "verify", str(tmp_path / "note"))
    assert checked.lines() == [f"trusted {tmp_path / 'note'}: #5 {first.hash.hex()} signed by "
                               f"{ORIGIN}"]
    forged = sign_checkpoint(Checkpoint.of(Head("main", 4, bytes(32)), ORIGIN, WHEN),
                             ORIGIN, Ed25519PrivateKey.generate())
    (tmp_path / "forged").write_bytes(forged.note())
    refused = await cli("checkpoint", "verify", str(tmp_path / "forged"))
    assert refused.code == 1 and refused.lines()[0].startswith(
        f"NOT trusted {tmp_path / 'forged'}: not signed by a trusted checkpoint key")

    await publish(cli, key_file)
    (checkpoint_dir / "main" / "00000000000000000004.checkpoint").write_bytes(forged.note())
    listing = await cli.ok("checkpoint", "verify")
    forged_key_id = forged.signatures[0].key_id.hex()
    assert listing.lines() == [
        f"trusted #5 {first.hash.hex()} {checkpoint_dir / 'main' / '00000000000000000005.checkpoint'}"
        f": signed by {ORIGIN}",
        f"  ignored checkpoint {checkpoint_dir / 'main' / '00000000000000000004.checkpoint'}: not "
        f"signed by a trusted checkpoint key (signed by {ORIGIN} (key ID {forged_key_id}))",
        "checkpoints: database matches all 1 trusted checkpoint(s), newest #5",
        "  every event is covered by checkpoint #5"]

    witness_key = tmp_path / "witness.key"
    witness_public = generate_key_file(witness_key).hex()
    witness = ("checkpoint", "cosign", "--witness-key", str(witness_key),
               "--witness-name", "witness.example/w1", "--state", str(tmp_path / "witness.json"))
    cosigned = await cli.ok(*witness)
    assert cosigned.stdout.startswith("\u2014 witness.example/w1 ")
    assert "(extends #0)" in cosigned.stderr
    assert (checkpoint_dir / "main" / "00000000000000000005.witness.example%2fw1.cosignature"
            ).read_text() == cosigned.stdout
    listed = await cli.ok("checkpoint", "verify",
                          env={"CANONLOG_WITNESS_KEYS": f"witness.example/w1={witness_public}",
                               "CANONLOG_CHECKPOINT_WITNESSES_REQUIRED": "1"})
    assert listed.lines()[0].endswith(f"signed by {ORIGIN}; cosigned by witness.example/w1")

    # Whoever holds the ledger's key can sign a rewritten history; the witness does not follow.
    await append_events(database.app.uri(), 1)  # 6..8
    await as_superuser(database.admin.uri(), EDIT_PAYLOADS, REWRITE_CHAIN)
    head = Head("main", 8, await hash_at(database.app.uri(), 8))
    laundered = sign_checkpoint(Checkpoint.of(head, ORIGIN, WHEN), ORIGIN,
                                load_private_key(key_file[0]))
    (tmp_path / "laundered").write_bytes(laundered.note())
    refusal = await cli(*witness, "--note", str(tmp_path / "laundered"))
    assert refusal.code == 3, refusal
    assert refusal.stderr.strip() == (
        f"canonlog: WitnessRefused: checkpoint #8 of {ORIGIN} is refused: the chain from "
        f"checkpoint #5 ({first.hash.hex()}) does not verify: sequence 6: previous hash does not "
        f"match the hash of sequence 5")
    assert "witness.example/w1" not in (tmp_path / "laundered").read_text()
