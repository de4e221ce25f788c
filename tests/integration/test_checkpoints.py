"""Signed checkpoints against real directories and a real PostgreSQL: store, trust, publish, witness."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import canonlog
from canonlog.application.checkpoints import (
    CheckpointPublisher,
    CheckpointSigner,
    SignedCheckpoints,
    publish_checkpoint,
)
from canonlog.application.ports import append_one
from canonlog.application.verification import check_against_checkpoints
from canonlog.application.witness import CheckpointWitness
from canonlog.domain.checkpoint import Checkpoint, TrustedKey, cosign, parse_checkpoint, sign_checkpoint
from canonlog.domain.errors import (
    CheckpointConflict,
    CheckpointFormatError,
    TamperDetected,
    WitnessRefused,
    WriterInconsistency,
)
from canonlog.domain.events import AppendRequest, Head, NewEvent
from canonlog.infrastructure.bootstrap import trusted_checkpoints
from canonlog.infrastructure.checkpoint_store import DirectoryCheckpointStore, FileWitnessState
from canonlog.infrastructure.export import export_ledger, read_export
from canonlog.infrastructure.keyfiles import generate_key_file, public_bytes
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from canonlog.infrastructure.settings import Settings
from tests.support.ledgers import append_events, as_superuser, copy_database
from tests.support.servers import drop

ORIGIN = "canonlog/main"
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signer(log_key) -> CheckpointSigner:
    return CheckpointSigner(ORIGIN, log_key)


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def note_for(key: Ed25519PrivateKey, sequence: int, *, ledger: str = "main",
             hash_: bytes | None = None, name: str = ORIGIN) -> bytes:
    head = Head(ledger, sequence, hash_ or hashlib.sha256(str(sequence).encode()).digest())
    return sign_checkpoint(Checkpoint.of(head, f"canonlog/{ledger}", WHEN), name, key).note()


# -- the directory store -------------------------------------------------------------------


async def test_a_published_checkpoint_is_never_replaced(tmp_path, log_key):
    store = DirectoryCheckpointStore(tmp_path)
    first = note_for(log_key, 10)
    location = await store.publish("main", 10, first)
    assert Path(location) == tmp_path / "main" / "00000000000000000010.checkpoint"
    with pytest.raises(CheckpointConflict, match="never replaced"):
        await store.publish("main", 10, note_for(log_key, 10, hash_=bytes(32)))
    assert read(location) == first
    assert (await store.load("main", 10)).note == first


async def test_the_store_lists_newest_first_and_hands_cosignatures_over_apart(tmp_path, log_key):
    store = DirectoryCheckpointStore(tmp_path)
    for sequence in (9, 100, 10):
        await store.publish("main", sequence, note_for(log_key, sequence))
    assert [s.sequence for s in await store.list_checkpoints("main")] == [100, 10, 9]
    assert await store.list_checkpoints("other") == []

    witness = Ed25519PrivateKey.generate()
    line = cosign(parse_checkpoint(note_for(log_key, 10)), "w.example/1", witness, 1).line().encode()
    assert await store.add_cosignature("main", 10, "w.example/1", line)
    assert not await store.add_cosignature("main", 10, "w.example/1", line)
    (tmp_path / "main" / "00000000000000000010.junk.cosignature").write_bytes(b"not a line")
    stored = await store.load("main", 10)
    assert stored.note == note_for(log_key, 10)
    assert [(Path(c.location).name, c.content) for c in stored.cosignatures] == [
        ("00000000000000000010.junk.cosignature", b"not a line"),
        ("00000000000000000010.w.example%2f1.cosignature", line)]
    with pytest.raises(CheckpointConflict, match="no checkpoint #11"):
        await store.add_cosignature("main", 11, "w.example/1", line)
    with pytest.raises(CheckpointFormatError):
        await store.add_cosignature("main", 10, "w.example/2", line)


async def test_ledger_names_cannot_leave_the_directory(tmp_path, log_key):
    store = DirectoryCheckpointStore(tmp_path / "store")
    for ledger in ("..", "../evil", "a/b", "%41"):
        location = Path(await store.publish(ledger, 1, note_for(log_key, 1)))
        assert location.parent.parent == tmp_path / "store", location
    assert len({p.name for p in (tmp_path / "store").iterdir()}) == 4


# -- which checkpoints are trusted ----------------------------------------------------------


async def test_only_verifying_checkpoints_of_the_ledger_are_trusted_the_rest_reported(
        tmp_path, log_key):
    store = DirectoryCheckpointStore(tmp_path)
    stranger = Ed25519PrivateKey.generate()
    await store.publish("main", 5, note_for(log_key, 5))
    await store.publish("main", 9, note_for(stranger, 9))
    await store.publish("main", 7, note_for(log_key, 7).replace(b"\n7\n", b"\n70\n"))
    await store.publish("main", 8, note_for(log_key, 8, ledger="other"))
    await store.publish("main", 11, note_for(log_key, 6))
    await store.publish("main", 12, b"hello\n")
    (tmp_path / "elsewhere.checkpoint").write_bytes(note_for(log_key, 50))
    trusted = SignedCheckpoints([store], [TrustedKey(ORIGIN, public_bytes(log_key))])

    review = await trusted.review("main")
    assert [t.head.sequence for t in review.trusted] == [5]
    reasons = {Path(i.location).name[:20].lstrip("0"): i.reason for i in review.ignored}
    stranger_id = TrustedKey(ORIGIN, public_bytes(stranger)).key_id.hex()
    assert reasons == {
        "12": "not a checkpoint note: note has no blank line between the checkpoint and its "
              "signatures",
        "11": "it is filed under sequence 11 but vouches for sequence 6",
        "9": f"not signed by a trusted checkpoint key (signed by {ORIGIN} (key ID {stranger_id}))",
        "8": "it is a checkpoint of ledger 'other', not 'main'",
    }
    # An edited note still names the trusted key, whose signature no longer verifies.
    assert [(Path(f.location).name, f.reason) for f in review.forged] == [
        ("00000000000000000007.checkpoint", f"signature by {ORIGIN} does not verify")]
    assert await trusted.newest("main") == review.trusted[0].head
    assert await trusted.heads("main") == [review.trusted[0].head]


async def test_a_broken_signature_by_a_trusted_key_or_missing_witnesses_mean_no_trust(
        tmp_path, log_key):
    store = DirectoryCheckpointStore(tmp_path)
    note = note_for(log_key, 5)
    await store.publish("main", 5, note)
    bad = bytearray(note_for(log_key, 7))
    bad[-5] = ord("A") if bad[-5] != ord("A") else ord("B")  # inside the signature's base64
    await store.publish("main", 7, bytes(bad))
    witness = Ed25519PrivateKey.generate()
    quorum = SignedCheckpoints([store], [TrustedKey(ORIGIN, public_bytes(log_key))],
                               witnesses=[TrustedKey.witness("w1", public_bytes(witness))],
                               witnesses_required=1)
    review = await quorum.review("main")
    assert review.trusted == ()
    assert [(Path(i.location).name, i.reason) for i in review.ignored] == [
        ("00000000000000000005.checkpoint", "it is cosigned by 0 of the 1 witnesses required")]
    assert [(Path(i.location).name, i.reason) for i in review.forged] == [
        ("00000000000000000007.checkpoint", f"signature by {ORIGIN} does not verify")]
    line = cosign(parse_checkpoint(note), "w1", witness, 1).line().encode()
    await store.add_cosignature("main", 5, "w1", line)
    trusted = (await quorum.review("main")).trusted
    assert [t.head.sequence for t in trusted] == [5]
    assert trusted[0].verification.cosigned_by == (("w1", 1),)


# -- the database against its checkpoints ----------------------------------------------------


async def test_the_comparison_names_both_values_and_the_last_matching_sequence():
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "w")
    for i in range(9):
        await append_one(log, grant, AppendRequest.create("s", [NewEvent.create("e", {"i": i})]))
    events = await log.read_all("main")
    at = {e.sequence: e.hash for e in events}
    db_head = await log.head("main")
    wrong = bytes(32)
    comparison = await check_against_checkpoints(log, "main", [
        Head("main", 3, at[3]), Head("main", 6, at[6]), Head("main", 8, wrong),
        Head("main", 20, wrong), Head("main", 6, at[6])])
    assert not comparison.ok
    assert comparison.checked == 4
    assert comparison.last_matching == Head("main", 6, at[6])
    assert [m.kind for m in comparison.mismatches] == ["hash", "behind"]
    assert comparison.mismatches[0].message == (
        f"hash at sequence 8 is {at[8].hex()} in the database but {wrong.hex()} in checkpoint #8: "
        f"the chain was rewritten or replaced; the last checkpointed sequence that still matches "
        f"is 6")
    assert comparison.mismatches[1].message == (
        f"database head #10 {db_head.hash.hex()} is behind checkpoint #20 {wrong.hex()}: events "
        f"were removed or an older copy of the database was restored; the last checkpointed "
        f"sequence that still matches is 6")
    fine = await check_against_checkpoints(log, "main", [Head("main", 6, at[6])])
    assert fine.ok and fine.uncovered == 4
    assert (await check_against_checkpoints(log, "main", [])).uncovered == 10


# -- publishing ------------------------------------------------------------------------------


async def test_publishing_signs_the_database_head_once_per_sequence(database, tmp_path, signer):
    head = await append_events(database.app.uri(), 4)
    log = await AsyncpgEventLog.connect(database.app.uri(), max_size=2)
    stores = [DirectoryCheckpointStore(tmp_path / "a"), DirectoryCheckpointStore(tmp_path / "b")]
    try:
        first = await publish_checkpoint(log, "main", signer, stores, origin=ORIGIN)
        assert first.new and len(first.locations) == 2
        assert first.checkpoint.checkpoint.head == head
        for location in first.locations:
            assert parse_checkpoint(read(location)) == first.checkpoint
        again = await publish_checkpoint(log, "main", signer, stores, origin=ORIGIN)
        assert not again.new and again.locations == first.locations

        later = await append_events(database.app.uri(), 1)
        other = DirectoryCheckpointStore(tmp_path / "c")
        await other.publish("main", later.sequence,
                            note_for(signer.private_key, later.sequence, hash_=bytes(32)))
        with pytest.raises(TamperDetected) as caught:
            await publish_checkpoint(log, "main", signer, [other], origin=ORIGIN)
        assert str(caught.value).endswith(
            f"records hash {bytes(32).hex()} but the database has {later.hash.hex()} at that "
            f"sequence")
    finally:
        await log.close()


async def test_the_publisher_waits_for_n_events_or_t_seconds_and_skips_a_still_head(
        database, tmp_path, signer):
    await append_events(database.app.uri(), 2)
    log = await AsyncpgEventLog.connect(database.app.uri(), max_size=2)
    store = DirectoryCheckpointStore(tmp_path)
    now = [1000.0]
    publisher = CheckpointPublisher(log, "main", signer, [store], origin=ORIGIN,
                                    every_events=5, every_seconds=60, clock=lambda: now[0])
    try:
        first = await publisher.publish_if_due()  # nothing published yet: due at once
        assert first is not None and publisher.published_sequence == 4
        assert await publisher.publish_if_due() is None  # head unchanged
        await append_events(database.app.uri(), 1)  # 3 more events (grant, deposit, release)
        now[0] += 59
        assert await publisher.publish_if_due() is None  # 3 < 5 events, 59 < 60 seconds
        now[0] += 1
        assert (await publisher.publish_if_due()).checkpoint.checkpoint.sequence == 7
        await append_events(database.app.uri(), 3)  # 5 events: due by count alone
        assert (await publisher.publish_if_due()).checkpoint.checkpoint.sequence == 12
        now[0] += 3600
        assert await publisher.publish_if_due() is None  # time passed, head did not move
        assert [s.sequence for s in await store.list_checkpoints("main")] == [12, 7, 4]

        restarted = CheckpointPublisher(log, "main", signer, [store], origin=ORIGIN,
                                        every_events=5, every_seconds=60, clock=lambda: now[0])
        await restarted.load_published()
        assert restarted.published_sequence == 12
        assert await restarted.publish_if_due() is None
    finally:
        await log.close()


def ledger_settings(database, tmp_path: Path, key_file: Path, data_dir: str, **extra) -> Settings:
    return Settings(dsn=database.app.uri(), admin_dsn=database.admin.uri(),
                    data_dir=tmp_path / data_dir, checkpoint_dir=tmp_path / "checkpoints",
                    checkpoint_key_file=key_file, **extra)


async def test_the_writer_publishes_in_the_background_and_its_startup_holds_the_database_to_them(
        database, tmp_path):
    key_file = tmp_path / "checkpoint.key"
    generate_key_file(key_file)
    settings = ledger_settings(database, tmp_path, key_file, "host-1",
                               checkpoint_every_events=3, checkpoint_every_seconds=3600)
    trusted = trusted_checkpoints(settings, "main")

    async def newest_reaches(sequence: int) -> None:
        for _ in range(100):
            newest = await trusted.newest("main")
            if newest is not None and newest.sequence >= sequence:
                return
            await asyncio.sleep(0.05)

    async with canonlog.open(settings) as ledger:
        await newest_reaches(1)  # published at start: the writer's grant
        for i in range(4):
            await ledger.append(f"s-{i}", [canonlog.event("e", {"i": i})])  # sequences 2..5
        await newest_reaches(4)
        await ledger.append("s-last", [canonlog.event("e", {"i": 99})])
        head = await ledger.head()
    # Published at start, after 3 more events, and at stop (the rest).
    sequences = [h.sequence for h in await trusted.heads("main")]
    assert sequences[0] == head.sequence == 6, sequences
    assert len(sequences) == 3 and sequences[2] == 1 and sequences[1] in (4, 5), sequences
    survivor = sequences[1]

    await as_superuser(database.admin.uri(),
                       f"DELETE FROM canonlog.events WHERE ledger_id = 'main' AND seq > {survivor}")
    elsewhere = ledger_settings(database, tmp_path, key_file, "host-2")
    with pytest.raises(WriterInconsistency) as caught:
        async with canonlog.open(elsewhere):
            pass
    assert str(caught.value).startswith(
        f"the database contradicts a trusted checkpoint: database head #{survivor} ")
    assert str(caught.value).endswith(
        f"is behind checkpoint #{head.sequence} {head.hash.hex()}: events were removed or an "
        f"older copy of the database was restored; the last checkpointed sequence that still "
        f"matches is {survivor}")


# -- witnesses -------------------------------------------------------------------------------


@pytest.fixture
def witness_parts(tmp_path, log_key):
    key = Ed25519PrivateKey.generate()
    state = FileWitnessState(tmp_path / "witness" / "state.json")
    witness = CheckpointWitness("witness.example/w1", key, state,
                                [TrustedKey(ORIGIN, public_bytes(log_key))], clock=lambda: 1234.0)
    return witness, state, key


async def test_a_witness_refuses_a_fork_of_what_it_cosigned(database, pg_admin, tmp_path,
                                                            signer, witness_parts):
    witness, state, witness_key = witness_parts
    app = database.app.uri()
    first = await append_events(app, 3)
    log = await AsyncpgEventLog.connect(app, max_size=2)
    try:
        note = sign_checkpoint(Checkpoint.of(first, ORIGIN, WHEN), ORIGIN, signer.private_key).note()
        cosigned = await witness.cosign(note, reader=log)  # first sight: verified from genesis
        assert cosigned.previous_sequence == 0
        assert cosigned.cosignature.timestamp == 1234
        assert TrustedKey.witness("witness.example/w1", public_bytes(witness_key)).key_id \
            == cosigned.cosignature.key_id
    finally:
        await log.close()

    fork = await copy_database(pg_admin, database.admin)
    try:
        original_head = await append_events(app, 2, writer_id="writer-a")
        forked_head = await append_events(fork.as_user(database.app.user).uri(), 2,
                                          writer_id="writer-b")
        assert original_head.sequence == forked_head.sequence
        assert original_head.hash != forked_head.hash

        original = await AsyncpgEventLog.connect(app, max_size=2)
        forked = await AsyncpgEventLog.connect(fork.as_user(database.app.user).uri(), max_size=2)
        try:
            extended = await publish_checkpoint(original, "main", signer,
                                                [DirectoryCheckpointStore(tmp_path / "a")],
                                                origin=ORIGIN)
            assert (await witness.cosign(extended.checkpoint.note(), reader=original)
                    ).previous_sequence == first.sequence
            rival = await publish_checkpoint(forked, "main", signer,
                                             [DirectoryCheckpointStore(tmp_path / "b")],
                                             origin=ORIGIN)
            with pytest.raises(WitnessRefused) as same_size:
                await witness.cosign(rival.checkpoint.note(), reader=forked)
            assert str(same_size.value) == (
                f"checkpoint #{forked_head.sequence} of {ORIGIN} is refused: it says hash "
                f"{forked_head.hash.hex()} but this witness cosigned hash "
                f"{original_head.hash.hex()} at that sequence: the ledger forked")

            grown = await append_events(fork.as_user(database.app.user).uri(), 1,
                                        writer_id="writer-b")
            rival = await publish_checkpoint(forked, "main", signer,
                                             [DirectoryCheckpointStore(tmp_path / "b")],
                                             origin=ORIGIN)
            assert rival.checkpoint.checkpoint.sequence == grown.sequence
            with pytest.raises(WitnessRefused) as larger:
                await witness.cosign(rival.checkpoint.note(), reader=forked)
            assert str(larger.value).startswith(
                f"checkpoint #{grown.sequence} of {ORIGIN} is refused: the chain from checkpoint "
                f"#{original_head.sequence} ({original_head.hash.hex()}) does not verify: "
                f"sequence {original_head.sequence + 1}: previous hash does not match")
            assert state.last_cosigned(ORIGIN) == original_head
        finally:
            await original.close()
            await forked.close()
    finally:
        await drop(pg_admin, fork)


async def test_a_witness_checks_an_export_and_refuses_what_it_cannot_check(
        tmp_path, signer, witness_parts):
    witness, state, _ = witness_parts
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "w")

    async def grow(n: int) -> bytes:
        for i in range(n):
            await append_one(log, grant, AppendRequest.create("s", [NewEvent.create("e", {"i": i})]))
        head = await log.head("main")
        return sign_checkpoint(Checkpoint.of(head, ORIGIN, WHEN), ORIGIN, signer.private_key).note()

    first = await grow(2)
    assert (await witness.cosign(first)).previous_sequence == 0  # first sight, nothing to check
    second = await grow(3)
    with pytest.raises(WitnessRefused, match="no events were given to check that it extends "
                                             "checkpoint #3"):
        await witness.cosign(second)
    export = io.StringIO()
    await export_ledger(log, "main", export)
    path = tmp_path / "export.jsonl"
    path.write_text(export.getvalue())
    assert (await witness.cosign(second, events=read_export(path))).previous_sequence == 3
    assert (await witness.cosign(second)).previous_sequence == 6  # same checkpoint again
    with pytest.raises(WitnessRefused, match="it is older than checkpoint #6"):
        await witness.cosign(first)
    stranger = sign_checkpoint(parse_checkpoint(second).checkpoint, ORIGIN,
                               Ed25519PrivateKey.generate()).note()
    with pytest.raises(WitnessRefused, match="not signed by a trusted checkpoint key"):
        await witness.cosign(stranger)
    third = await grow(1)  # the export ends at #6
    with pytest.raises(WitnessRefused, match=r"reaches #6 .*, not #7 "):
        await witness.cosign(third, events=read_export(path))
    assert state.last_cosigned(ORIGIN).sequence == 6

    (tmp_path / "witness" / "state.json").write_text("{broken")
    with pytest.raises(CheckpointFormatError, match="unreadable"):
        await witness.cosign(third)
