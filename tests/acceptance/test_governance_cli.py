"""Governance end to end through the real `canonlog` command: the policy's genesis and
changes, failover and resume ceremonies with the witnesses' own key files, what one
operator alone cannot do, forgeries caught by verify and by writer startup, key
revocation and appends; each step a subprocess against PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncpg
import pytest

from canonlog.domain.ceremony import failover_statement_v1
from canonlog.domain.errors import GrantUnavailable, StaleWriter
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.conftest import TestDatabase
from tests.support.cli import Cli


@pytest.fixture
def cli(database: TestDatabase, tmp_path: Path) -> Cli:
    return Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"), "CANONLOG_ACTOR": "ops-alice",
        "CANONLOG_WRITER_ID": "writer-1"}, operator_dsn=database.operator.uri())


@pytest.fixture
def operator_alone(cli: Cli, database: TestDatabase) -> Cli:
    """The command with the operator's login for every connection, the administrator's
    included: one operator with nobody else's credentials."""
    alone = Cli(database.operator.uri(), database.operator.uri(),
                operator_dsn=database.operator.uri())
    alone.env = cli.env | {"CANONLOG_MIGRATE_ON_START": "false"}
    return alone


@pytest.fixture
async def app_log(database: TestDatabase):
    log = await AsyncpgEventLog.connect(database.app.uri())
    yield log
    await log.close()


def event(n: int) -> AppendRequest:
    return AppendRequest.create("orders", [NewEvent.create("placed", {"n": n})])


async def witness_keys(cli: Cli, tmp_path: Path, owners: list[str]) -> dict[str, Path]:
    """Each witness generates a key on their own machine with `keys generate` and hands
    the administrator the public key file; key id -> (private key file)."""
    files = {}
    for owner in owners:
        path = tmp_path / f"{owner}.pem"
        public = (await cli.ok("keys", "generate", "--out", str(path))).stdout.strip()
        assert re.fullmatch("[0-9a-f]{64}", public)
        (tmp_path / f"{owner}.pub").write_text(public + "\n")
        files[owner] = path
    return files


def witness_options(tmp_path: Path, owners: list[str]) -> list[str]:
    return [arg for owner in owners
            for arg in ("--witness", f"w-{owner}:{owner}={tmp_path / f'{owner}.pub'}")]


async def init_ledger(cli: Cli, tmp_path: Path, owners: list[str], *options: str
                      ) -> dict[str, Path]:
    """Genesis: witness key files, then `ledger init` with the administrator's connection."""
    keys = await witness_keys(cli, tmp_path, owners)
    await cli.ok("ledger", "init", *witness_options(tmp_path, owners), *options)
    return keys


async def test_the_full_failover_ceremony_fences_the_old_writer(cli, app_log, tmp_path):
    keys = await init_ledger(cli, tmp_path, ["alice", "bob", "carol"], "--threshold", "2")
    shown = (await cli.ok("policy", "show", "--json")).json()
    assert shown["sequence"] == 1
    assert [w["key_id"] for w in shown["policy"]["witnesses"]] == ["w-alice", "w-bob", "w-carol"]
    old = await app_log.acquire_grant("main", "writer-1")
    await app_log.append(old, event(1))

    proposed = (await cli.ok("failover", "propose", "--to", "writer-2", "--json")).json()
    proposal = str(proposed["proposal_id"])
    assert (proposed["writer_id"], proposed["epoch"], proposed["target_writer_id"]) == (
        "writer-1", old.epoch, "writer-2")
    await cli.ok("failover", "approve", "--proposal", proposal, "--key-id", "w-alice",
                 "--key", str(keys["alice"]))
    refused = await cli("failover", "execute", "--proposal", proposal)
    assert refused.code == 3
    assert refused.stderr.strip() == (f"canonlog: ThresholdNotMet: proposal {proposal} of ledger "
                                      "main has approvals from 1 of the 2 witnesses it needs")
    await app_log.append(old, event(2))  # below the threshold nothing moved

    # A witness cannot approve with another witness's key.
    wrong = await cli("failover", "approve", "--proposal", proposal, "--key-id", "w-bob",
                      "--key", str(keys["carol"]))
    assert wrong.code == 3 and "not the one registered as that key" in wrong.stderr
    await cli.ok("failover", "approve", "--proposal", proposal, "--key-id", "w-bob",
                 "--key", str(keys["bob"]))
    status = (await cli.ok("failover", "status", "--proposal", proposal, "--json")).json()
    (ceremony,) = status["ceremonies"]
    assert (ceremony["witnesses"], ceremony["threshold"], ceremony["executable"]) == (2, 2, True)
    assert all(a["counts"] for a in ceremony["approvals"])

    executed = await cli.ok("failover", "execute", "--proposal", proposal)
    assert f"writer writer-2 now holds the grant of ledger main at epoch {old.epoch + 1}" in (
        executed.stdout)

    with pytest.raises(StaleWriter):
        await app_log.append(old, event(3))
    with pytest.raises(GrantUnavailable):
        await app_log.acquire_grant("main", "writer-1")
    state = await app_log.ledger_state("main")
    assert (state.writer_id, state.epoch) == ("writer-2", old.epoch + 1)

    # The promoted writer starts normally under its own id.
    appended = (await cli.ok("append", "--stream", "orders", "--type", "placed",
                             "--payload", '{"n": 4}', "--json",
                             env={"CANONLOG_WRITER_ID": "writer-2"})).json()
    assert [e["stream_version"] for e in appended["appended"]] == [3]
    assert "events verified" in (await cli.ok("verify")).stdout

    (promoted,) = [e for e in await app_log.read_stream("main", "$ledger")
                   if e.event_type == "canonlog.writer_promoted"]
    payload = json.loads(promoted.payload)
    assert (payload["previous_writer_id"], payload["writer_id"], payload["threshold"],
            payload["policy_sequence"]) == ("writer-1", "writer-2", 2, 1)
    assert [a["key_id"] for a in payload["approvals"]] == ["w-alice", "w-bob"]
    content = failover_statement_v1(
        ledger_id="main", proposal_id=payload["proposal_id"], target_writer_id="writer-2",
        writer_id="writer-1", epoch=old.epoch, head_sequence=payload["previous_head_sequence"],
        head_hash=bytes.fromhex(payload["previous_head_hash"]))
    assert bytes.fromhex(ceremony["statement"]) == content


async def test_a_forged_approval_is_caught_by_status_and_execute(cli, app_log, database,
                                                                 tmp_path):
    keys = await init_ledger(cli, tmp_path, ["alice", "bob"], "--threshold", "2")
    await app_log.acquire_grant("main", "writer-1")
    proposal = (await cli.ok("failover", "propose", "--to", "writer-2", "--json")).json()[
        "proposal_id"]
    await cli.ok("failover", "approve", "--proposal", str(proposal), "--key-id", "w-alice",
                 "--key", str(keys["alice"]))
    # Bypassing the tooling: the database records whatever 64 bytes it is given.
    operator = await AsyncpgEventLog.connect(database.operator.uri())
    try:
        await operator.approve("main", proposal, "w-bob", bytes(64), "mallory")
    finally:
        await operator.close()

    status = await cli("failover", "status", "--proposal", str(proposal))
    assert status.code == 1
    assert "approval by key w-bob (witness bob)" in status.stdout
    assert "signature by key w-bob does not verify" in status.stdout
    refused = await cli("failover", "execute", "--proposal", str(proposal))
    assert refused.code == 1
    assert "TamperDetected" in refused.stderr and "key w-bob" in refused.stderr
    assert (await app_log.ledger_state("main")).writer_id == "writer-1"


async def test_halt_and_resume_after_the_policys_waiting_period(cli, app_log, tmp_path):
    keys = await init_ledger(cli, tmp_path, ["alice", "bob"], "--threshold", "2",
                             "--resume-wait", "6s")
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 1}')
    halted = await cli.ok("halt", "--reason", "suspected tampering")
    assert "ledger main halted at sequence" in halted.stdout
    refused = await cli("append", "--stream", "orders", "--type", "placed", "--payload", "{}")
    assert refused.code == 3
    assert "SystemHalted" in refused.stderr and "suspected tampering" in refused.stderr
    early = await cli("resume", "execute")
    assert early.code == 3 and "no witness has approved resuming ledger main" in early.stderr

    approved = await cli.ok("resume", "approve", "--key-id", "w-alice", "--key",
                            str(keys["alice"]))
    assert "1 of 2 witnesses" in approved.stdout
    # The caller's settings change nothing: the wait and the threshold are the policy's.
    anything = {"CANONLOG_RESUME_WAIT_SECONDS": "0", "CANONLOG_WITNESS_THRESHOLD": "1"}
    waiting = await cli("resume", "execute", env=anything)
    assert waiting.code == 3
    assert re.fullmatch(
        r"canonlog: WaitingPeriodNotOver: ledger main was halted at sequence \d+; resuming "
        r"waits 0h 0m 6s after the halt, and 0h 0m [1-6]s remain", waiting.stderr.strip()), (
        waiting.stderr)
    status = (await cli.ok("resume", "status", "--json")).json()
    assert status["halted"] and status["ceremony"]["witnesses"] == 1
    assert status["min_wait_seconds"] == 6
    assert status["ceremony"]["wait_ends_at"] is not None
    await asyncio.sleep(6)
    below = await cli("resume", "execute", env=anything)
    assert below.code == 3 and "approvals from 1 of the 2 witnesses" in below.stderr
    assert (await app_log.ledger_state("main")).halted
    await cli.ok("resume", "approve", "--key-id", "w-bob", "--key", str(keys["bob"]))
    resumed = await cli.ok("resume", "execute")
    assert "ledger main resumed" in resumed.stdout
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 2}')

    resumed_event = next(e for e in await app_log.read_stream("main", "$ledger")
                         if e.event_type == "canonlog.resumed")
    evidence = json.loads(resumed_event.payload)["evidence"]
    assert [a["key_id"] for a in evidence["approvals"]] == ["w-alice", "w-bob"]
    assert (evidence["min_wait_seconds"], evidence["threshold"]) == (6, 2)
    assert "events verified" in (await cli.ok("verify")).stdout


async def test_one_operator_alone_can_neither_resume_nor_move_the_grant_nor_add_a_witness(
        cli, operator_alone, app_log, database, tmp_path):
    await init_ledger(cli, tmp_path, ["alice", "bob"], "--threshold", "2")
    grant = await app_log.acquire_grant("main", "writer-1")
    await app_log.append(grant, event(1))
    mallory = await witness_keys(operator_alone, tmp_path, ["mallory", "mallory2"])
    public = (tmp_path / "mallory.pub").read_text().strip()
    anything = {"CANONLOG_WITNESS_THRESHOLD": "1", "CANONLOG_RESUME_WAIT_SECONDS": "0"}
    before = (await cli.ok("policy", "show", "--json")).json()

    # No witness of its own: not as a key, not as a second genesis, not by a policy change.
    added = await operator_alone("keys", "add", "--key-id", "w-mallory", "--purpose",
                                 "witness", "--owner", "mallory", "--public-key", public)
    assert added.code == 3 and "only through a policy ceremony" in added.stderr
    for verb in ("init", "adopt-policy"):
        again = await operator_alone("ledger", verb, "--ledger", "main", "--threshold", "1",
                                     "--witness", f"w-mallory={tmp_path / 'mallory.pub'}")
        assert again.code != 0, verb
    proposed = (await operator_alone.ok(
        "policy", "propose", "--threshold", "1", "--json",
        *witness_options(tmp_path, ["mallory"]), env=anything)).json()
    signed = await operator_alone("policy", "approve", "--proposal",
                                  str(proposed["proposal_id"]), "--key-id", "w-mallory",
                                  "--key", str(mallory["mallory"]))
    assert signed.code == 3 and "w-mallory is not a witness key of the policy" in signed.stderr
    changed = await operator_alone("policy", "execute", "--proposal",
                                   str(proposed["proposal_id"]), env=anything)
    assert changed.code == 3 and "approvals from 0 of the 2 witnesses" in changed.stderr

    # No grant moved: its own keys do not count, and a witness's key id needs their key.
    failover = (await operator_alone.ok("failover", "propose", "--to", "writer-m",
                                        "--json")).json()["proposal_id"]
    for key_id, key in (("w-mallory", mallory["mallory"]), ("w-alice", mallory["mallory"])):
        refused = await operator_alone("failover", "approve", "--proposal", str(failover),
                                       "--key-id", key_id, "--key", str(key))
        assert refused.code == 3, key_id
    moved = await operator_alone("failover", "execute", "--proposal", str(failover),
                                 env=anything)
    assert moved.code == 3 and "ThresholdNotMet" in moved.stderr

    # No halt lifted.
    await operator_alone.ok("halt", "--reason", "drill")
    for key_id in ("w-mallory", "w-bob"):
        refused = await operator_alone("resume", "approve", "--key-id", key_id, "--key",
                                       str(mallory["mallory2"]))
        assert refused.code == 3, key_id
    lifted = await operator_alone("resume", "execute", env=anything)
    assert lifted.code == 3

    # The bare SQL of the former functions, with a threshold and wait of its choosing.
    conn = await asyncpg.connect(database.operator.uri())
    try:
        for statement in ("SELECT canonlog.execute_failover_v1('main', 2, 1, 'm')",
                          "SELECT canonlog.resume_ceremony_v1('main', 3, 1, 0, 'm')",
                          "SELECT canonlog.add_key_v1('main', 'w-m', 'witness', 'm', "
                          "'\\x00', 'm')",
                          "SELECT canonlog.establish_policy_v1('main', '{}', 'm')"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()
    state = await app_log.ledger_state("main")
    assert (state.writer_id, state.epoch, state.halted) == ("writer-1", grant.epoch, True)
    assert (await cli.ok("policy", "show", "--json")).json() == before
    assert "events verified" in (await cli.ok("verify")).stdout


async def test_witness_rotation_and_a_policy_change_with_an_offline_approval(cli, app_log,
                                                                           tmp_path):
    keys = await init_ledger(cli, tmp_path, ["alice", "bob"], "--threshold", "2")
    keys |= await witness_keys(cli, tmp_path, ["carol"])
    await app_log.acquire_grant("main", "writer-1")
    # Rotate bob out and carol in; failovers need one witness from now on.
    proposed = (await cli.ok("policy", "propose", *witness_options(tmp_path, ["alice", "carol"]),
                             "--threshold", "2", "--failover-threshold", "1",
                             "--resume-wait", "1h", "--json")).json()
    proposal = str(proposed["proposal_id"])
    await cli.ok("policy", "approve", "--proposal", proposal, "--key-id", "w-alice",
                 "--key", str(keys["alice"]))
    # Bob signs the statement offline, on his own machine; anyone submits the signature.
    signature = (await cli.ok("policy", "sign", "--statement", proposed["statement"],
                              "--key", str(keys["bob"]))).stdout.strip()
    await cli.ok("policy", "approve", "--proposal", proposal, "--key-id", "w-bob",
                 "--signature", signature, "--actor", "courier")
    executed = await cli.ok("policy", "execute", "--proposal", proposal)
    assert "the policy of proposal" in executed.stdout
    shown = (await cli.ok("policy", "show", "--json")).json()
    assert [w["key_id"] for w in shown["policy"]["witnesses"]] == ["w-alice", "w-carol"]
    assert shown["policy"]["thresholds"] == {"failover": 1, "resume": 2, "policy": 2}
    assert shown["policy"]["resume_wait_seconds"] == 3600

    failover = (await cli.ok("failover", "propose", "--to", "writer-2", "--json")).json()
    retired = await cli("failover", "approve", "--proposal", str(failover["proposal_id"]),
                        "--key-id", "w-bob", "--key", str(keys["bob"]))
    assert retired.code == 3 and "w-bob is not a witness key of the policy" in retired.stderr
    await cli.ok("failover", "approve", "--proposal", str(failover["proposal_id"]),
                 "--key-id", "w-carol", "--key", str(keys["carol"]))
    await cli.ok("failover", "execute", "--proposal", str(failover["proposal_id"]))
    assert (await app_log.ledger_state("main")).writer_id == "writer-2"
    assert "events verified" in (await cli.ok("verify")).stdout


async def test_a_ledger_from_before_policies_adopts_one_once(cli, app_log, tmp_path):
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 1}')
    await cli.ok("halt", "--reason", "drill")
    keys = await witness_keys(cli, tmp_path, ["alice"])
    refused = await cli("resume", "approve", "--key-id", "w-alice", "--key", str(keys["alice"]))
    assert refused.code == 3
    assert "NoGovernancePolicy: ledger main has no governance policy" in refused.stderr
    assert "canonlog ledger adopt-policy" in refused.stderr
    exists = await cli("ledger", "init", *witness_options(tmp_path, ["alice"]),
                       "--threshold", "1")
    assert exists.code == 3 and "ledger adopt-policy" in exists.stderr
    adopted = await cli.ok("ledger", "adopt-policy", *witness_options(tmp_path, ["alice"]),
                           "--threshold", "1", "--resume-wait", "0s")
    assert "governance policy established at sequence" in adopted.stdout
    again = await cli("ledger", "adopt-policy", *witness_options(tmp_path, ["alice"]),
                      "--threshold", "1")
    assert again.code == 3 and "PolicyAlreadyEstablished" in again.stderr
    await cli.ok("resume", "approve", "--key-id", "w-alice", "--key", str(keys["alice"]))
    await cli.ok("resume", "execute")
    assert not (await app_log.ledger_state("main")).halted


FORGED_PROMOTION = """
    SELECT set_config('canonlog.append_guard', 'on', false);
    SELECT canonlog.append_system_v1('main', 'canonlog.writer_promoted', jsonb_build_object(
        'proposal_id', 99, 'previous_writer_id', 'writer-1', 'previous_epoch', 1,
        'previous_head_sequence', 2, 'previous_head_hash', repeat('00', 32),
        'writer_id', 'writer-m', 'epoch', 2, 'threshold', 1, 'policy_sequence', 1,
        'statement', 'canonlog/ceremony/failover/v1', 'actor', 'root',
        'approvals', jsonb_build_array(jsonb_build_object(
            'key_id', 'w-alice', 'owner_id', 'alice', 'signature', repeat('00', 64)))),
        'writer-m', 2);
    SELECT set_config('canonlog.append_guard', 'on', false);
    UPDATE canonlog.ledgers SET writer_id = 'writer-m', epoch = 2;
"""
FORGED_WITNESS = """
    SELECT set_config('canonlog.append_guard', 'on', false);
    INSERT INTO canonlog.policies
    SELECT ledger_id, (SELECT max(seq) FROM canonlog.events), jsonb_set(policy, '{witnesses}',
           policy->'witnesses' || jsonb_build_array(jsonb_build_object('key_id', 'w-root',
           'owner_id', 'root', 'public_key', repeat('ab', 32)))), 'change', 99, 'root', now()
    FROM canonlog.policies;
"""

#: A witness key row written straight into the key table, as only a superuser can.
FORGED_KEY_ROW = """
    SELECT set_config('canonlog.append_guard', 'on', false);
    INSERT INTO canonlog.keys (ledger_id, key_id, purpose, owner_id, public_key, added_seq,
                               added_at)
    SELECT 'main', 'w-root', 'witness', 'root', decode(repeat('ab', 32), 'hex'),
           (SELECT max(seq) FROM canonlog.events), now();
"""
#: An agent key, registered by its chained event, turned into a witness key in the table.
EDITED_KEY_ROW = """
    ALTER TABLE canonlog.keys DISABLE TRIGGER keys_guard_write;
    UPDATE canonlog.keys SET purpose = 'witness', owner_id = 'root' WHERE key_id = 'agent-k';
    ALTER TABLE canonlog.keys ENABLE ALWAYS TRIGGER keys_guard_write;
"""
FORGERIES = {"promotion": FORGED_PROMOTION, "witness": FORGED_WITNESS,
             "key-row": FORGED_KEY_ROW, "edited-key-row": EDITED_KEY_ROW}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_a_superusers_forgery_is_caught_by_verify_and_writer_startup(
        cli, app_log, database, tmp_path, forgery):
    await init_ledger(cli, tmp_path, ["alice", "bob"], "--threshold", "2")
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 1}')
    if forgery == "edited-key-row":
        await cli.ok("keys", "add", "--key-id", "agent-k", "--owner", "agent-1", "--public-key", "cd" * 32)
    assert "events verified" in (await cli.ok("verify")).stdout
    conn = await asyncpg.connect(database.admin.uri())
    try:
        await conn.execute(FORGERIES[forgery])
        forged_at = await conn.fetchval(
            "SELECT added_seq FROM canonlog.keys WHERE key_id = 'agent-k'"
            if forgery == "edited-key-row" else "SELECT max(seq) FROM canonlog.events")
    finally:
        await conn.close()

    verified = await cli("verify")
    assert verified.code == 1
    assert f"chain broken at sequence {forged_at}" in verified.stdout + verified.stderr
    writer = "writer-m" if forgery == "promotion" else "writer-1"
    started = await cli("append", "--stream", "orders", "--type", "placed", "--payload", "{}",
                        env={"CANONLOG_WRITER_ID": writer})
    assert started.code != 0
    assert f"broken at sequence {forged_at}" in started.stderr
    assert (await app_log.ledger_state("main")).halted


async def test_a_revoked_agent_key_signs_nothing_more(cli, app_log, tmp_path):
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 0}')
    public = (await cli.ok("keys", "generate", "--out", str(tmp_path / "agent.pem"))).stdout
    await cli.ok("keys", "add", "--key-id", "a-1", "--purpose", "agent", "--owner", "agent-7",
                 "--public-key", public.strip())
    signed = ("append", "--stream", "orders", "--type", "approved", "--payload", '{"n": 1}',
              "--agent-id", "agent-7", "--key", str(tmp_path / "agent.pem"), "--key-id", "a-1",
              "--json")
    accepted = (await cli.ok(*signed)).json()
    assert [e["signing_key_id"] for e in accepted["appended"]] == ["a-1"]

    revoked = await cli.ok("keys", "revoke", "--key-id", "a-1", "--reason", "laptop lost")
    assert "key a-1 revoked in ledger main at sequence" in revoked.stdout
    refused = await cli(*signed)
    assert refused.code == 3
    assert "signing key a-1 is not an active key of agent agent-7" in refused.stderr
    assert refused.json()["appended"] == []

    (listed,) = (await cli.ok("keys", "list", "--json")).json()
    assert listed["key_id"] == "a-1" and listed["revoked_seq"] is not None
    assert "events verified" in (await cli.ok("verify")).stdout
    stored = await app_log.read_stream("main", "orders")
    assert [(e.event_type, e.signing_key_id) for e in stored] == [("placed", None),
                                                                  ("approved", "a-1")]


async def test_append_from_arguments_and_from_json_lines(cli, app_log):
    first = await cli.ok("append", "--stream", "order-1", "--type", "placed",
                         "--payload", '{"amount": 120}', "--expected-version", "no_stream",
                         "--execution-id", "x-1", "--task-id", "t-1")
    assert re.fullmatch(r"#\d+ order-1 v1 placed [0-9a-f-]{36} [0-9a-f]{64}\n", first.stdout)
    conflict = await cli("append", "--stream", "order-1", "--type", "placed",
                         "--payload", "{}", "--expected-version", "no_stream")
    assert conflict.code == 3 and "ConcurrencyConflict" in conflict.stderr
    usage = await cli("append", "--stream", "order-1", "--type", "placed", "--payload", "{}",
                      "--expected-version", "zero")
    assert usage.code == 2

    lines = "\n".join([
        json.dumps({"stream": "order-1", "type": "paid", "payload": {"amount": 120},
                    "expected_version": 1, "correlation_id": "c-1"}),
        json.dumps({"stream": "order-2", "type": "placed", "payload": {"amount": 5}}),
        "",
        "{not json",
        json.dumps({"stream": "order-1", "type": "paid", "payload": {}, "expected_version": 1}),
        json.dumps({"stream": "order-2", "type": "shipped", "payload": {"box": 1},
                    "expected_version": "stream_exists", "metadata": {"by": "robot"}}),
    ]) + "\n"
    result = await cli("append", "--json", stdin=lines)
    assert result.code == 3
    report = result.json()
    assert [(e["stream_id"], e["stream_version"], e["event_type"]) for e in report["appended"]] == [
        ("order-1", 2, "paid"), ("order-2", 1, "placed"), ("order-2", 2, "shipped")]
    assert [(r["line"], r["error"]) for r in report["refused"]] == [
        (4, "InvalidEvent"), (5, "ConcurrencyConflict")]

    order_1 = await app_log.read_stream("main", "order-1")
    assert [(e.event_type, e.payload, e.execution_id, e.task_id, e.correlation_id)
            for e in order_1] == [("placed", b'{"amount":120}', "x-1", "t-1", None),
                                  ("paid", b'{"amount":120}', None, None, "c-1")]
    (_, shipped) = await app_log.read_stream("main", "order-2")
    assert shipped.metadata == b'{"by":"robot"}'
    clean = await cli.ok("append", stdin=json.dumps(
        {"stream": "order-3", "type": "placed", "payload": {}}) + "\n")
    assert clean.stdout.startswith("#") and "order-3 v1 placed" in clean.stdout


async def test_append_refuses_a_key_twice_in_one_object_storing_nothing(cli, app_log):
    twice = await cli("append", "--stream", "order-9", "--type", "placed",
                      "--payload", '{"amount":1,"amount":1000000}')
    assert twice.code == 3, twice
    assert twice.stderr.splitlines()[-1] == ("canonlog: InvalidEvent: --payload has the key 'amount' "
                                    "twice in one object")
    nested = await cli("append", "--json", stdin='{"stream": "order-9", "type": "placed", '
                       '"payload": {"a": {"b": 1, "b": 2}}}\n')
    assert nested.code == 3, nested
    assert nested.json()["refused"][0]["error"] == "InvalidEvent"
    assert "has the key 'b' twice in one object" in nested.json()["refused"][0]["message"]
    assert await app_log.read_stream("main", "order-9") == []
