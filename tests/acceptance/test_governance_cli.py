"""Governance end to end through the real `canonlog` command: failover and resume
ceremonies, key revocation and appends, each step a subprocess against PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from canonlog.domain.ceremony import failover_statement_v1, governance_event_problems
from canonlog.domain.errors import GrantUnavailable, StaleWriter
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.infrastructure.keyfiles import generate_key_file
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.conftest import TestDatabase
from tests.support.cli import Cli


@pytest.fixture
def cli(database: TestDatabase, tmp_path: Path) -> Cli:
    return Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"), "CANONLOG_ACTOR": "ops-alice",
        "CANONLOG_WRITER_ID": "writer-1"})


@pytest.fixture
async def app_log(database: TestDatabase):
    log = await AsyncpgEventLog.connect(database.app.uri())
    yield log
    await log.close()


def event(n: int) -> AppendRequest:
    return AppendRequest.create("orders", [NewEvent.create("placed", {"n": n})])


async def register_witnesses(cli: Cli, tmp_path: Path, owners: list[str]) -> dict[str, Path]:
    """Generates a key per witness with `keys generate` and registers it; key id -> file."""
    files = {}
    for owner in owners:
        path = tmp_path / f"{owner}.pem"
        public = (await cli.ok("keys", "generate", "--out", str(path))).stdout.strip()
        assert re.fullmatch("[0-9a-f]{64}", public)
        await cli.ok("keys", "add", "--key-id", f"w-{owner}", "--purpose", "witness",
                     "--owner", owner, "--public-key", public)
        files[f"w-{owner}"] = path
    return files


async def test_the_full_failover_ceremony_fences_the_old_writer(cli, app_log, tmp_path):
    old = await app_log.acquire_grant("main", "writer-1")
    await app_log.append(old, event(1))
    keys = await register_witnesses(cli, tmp_path, ["alice", "bob", "carol"])

    proposed = (await cli.ok("failover", "propose", "--to", "writer-2", "--json")).json()
    proposal = str(proposed["proposal_id"])
    assert (proposed["writer_id"], proposed["epoch"], proposed["target_writer_id"]) == (
        "writer-1", old.epoch, "writer-2")
    await cli.ok("failover", "approve", "--proposal", proposal, "--key-id", "w-alice",
                 "--key", str(keys["w-alice"]))
    refused = await cli("failover", "execute", "--proposal", proposal)
    assert refused.code == 3
    assert refused.stderr.strip() == (f"canonlog: ThresholdNotMet: proposal {proposal} of ledger "
                                      "main has approvals from 1 of the 2 witnesses it needs")
    await app_log.append(old, event(2))  # below the threshold nothing moved

    # A witness cannot approve with another witness's key.
    wrong = await cli("failover", "approve", "--proposal", proposal, "--key-id", "w-bob",
                      "--key", str(keys["w-carol"]))
    assert wrong.code == 3 and "not the one registered as that key" in wrong.stderr
    await cli.ok("failover", "approve", "--proposal", proposal, "--key-id", "w-bob",
                 "--key", str(keys["w-bob"]))
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

    verified = await cli.ok("verify")
    assert "events verified" in verified.stdout

    (promoted,) = [e for e in await app_log.read_stream("main", "$ledger")
                   if e.event_type == "canonlog.writer_promoted"]
    payload = json.loads(promoted.payload)
    assert (payload["previous_writer_id"], payload["previous_epoch"], payload["writer_id"],
            payload["epoch"]) == ("writer-1", old.epoch, "writer-2", old.epoch + 1)
    assert (payload["previous_head_sequence"], payload["previous_head_hash"]) == (
        proposed["head_sequence"], proposed["head_hash"])
    assert [a["key_id"] for a in payload["approvals"]] == ["w-alice", "w-bob"]
    content = failover_statement_v1(
        ledger_id="main", proposal_id=payload["proposal_id"], target_writer_id="writer-2",
        writer_id="writer-1", epoch=old.epoch, head_sequence=payload["previous_head_sequence"],
        head_hash=bytes.fromhex(payload["previous_head_hash"]))
    registered = {k.key_id: k for k in await app_log.list_keys("main")}
    for approval in payload["approvals"]:
        public = Ed25519PublicKey.from_public_bytes(registered[approval["key_id"]].public_key)
        public.verify(bytes.fromhex(approval["signature"]), content)  # raises if invalid
    assert governance_event_problems(promoted, registered) == []
    assert (await cli.ok("failover", "status", "--json")).json()["ceremonies"][0][
        "status"] == "executed"


async def test_a_forged_approval_is_caught_by_status_and_execute(cli, app_log, tmp_path):
    await app_log.acquire_grant("main", "writer-1")
    keys = await register_witnesses(cli, tmp_path, ["alice", "bob"])
    proposal = (await cli.ok("failover", "propose", "--to", "writer-2", "--json")).json()[
        "proposal_id"]
    await cli.ok("failover", "approve", "--proposal", str(proposal), "--key-id", "w-alice",
                 "--key", str(keys["w-alice"]))
    # Bypassing the tooling: the database records whatever 64 bytes it is given.
    await app_log.approve("main", proposal, "w-bob", bytes(64), "mallory")

    status = await cli("failover", "status", "--proposal", str(proposal))
    assert status.code == 1
    assert "approval by key w-bob (witness bob)" in status.stdout
    assert "signature by key w-bob does not verify" in status.stdout
    refused = await cli("failover", "execute", "--proposal", str(proposal))
    assert refused.code == 1
    assert "TamperDetected" in refused.stderr and "key w-bob" in refused.stderr
    assert (await app_log.ledger_state("main")).writer_id == "writer-1"


async def test_halt_and_resume_with_a_waiting_period(cli, app_log, tmp_path):
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 1}')
    halted = await cli.ok("halt", "--reason", "suspected tampering")
    assert "ledger main halted at sequence" in halted.stdout
    refused = await cli("append", "--stream", "orders", "--type", "placed", "--payload", "{}")
    assert refused.code == 3
    assert "SystemHalted" in refused.stderr and "suspected tampering" in refused.stderr
    early = await cli("resume", "execute", env={"CANONLOG_RESUME_WAIT_SECONDS": "0"})
    assert early.code == 3 and "no witness has approved resuming ledger main" in early.stderr

    for owner in ("alice", "bob"):  # registered through the API: the CLI path has its test
        public = generate_key_file(tmp_path / f"{owner}.pem")
        await app_log.add_key("main", f"w-{owner}", "witness", owner, public, "ops")
    approved = await cli.ok("resume", "approve", "--key-id", "w-alice", "--key",
                            str(tmp_path / "alice.pem"))
    assert "1 of 2 witnesses" in approved.stdout
    below = await cli("resume", "execute", env={"CANONLOG_RESUME_WAIT_SECONDS": "0"})
    assert below.code == 3 and "approvals from 1 of the 2 witnesses" in below.stderr
    await cli.ok("resume", "approve", "--key-id", "w-bob", "--key", str(tmp_path / "bob.pem"))

    waiting = await cli("resume", "execute")  # the default wait: 48 hours
    assert waiting.code == 3
    assert re.fullmatch(
        r"canonlog: WaitingPeriodNotOver: ledger main was halted at sequence \d+; resuming "
        r"waits 48h 0m 0s after the halt, and (48h 0m 0s|47h 59m \d+s) remain",
        waiting.stderr.strip()), waiting.stderr
    status = (await cli.ok("resume", "status", "--json")).json()
    assert status["halted"] and status["ceremony"]["witnesses"] == 2
    assert status["ceremony"]["blocker"] is None and status["min_wait_seconds"] == 172800
    assert (await app_log.ledger_state("main")).halted

    resumed = await cli.ok("resume", "execute", env={"CANONLOG_RESUME_WAIT_SECONDS": "0"})
    assert "ledger main resumed" in resumed.stdout
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", '{"n": 2}')

    ledger_events = await app_log.read_stream("main", "$ledger")
    assert [e.event_type for e in ledger_events if e.event_type.startswith(("canonlog.h",
            "canonlog.r", "canonlog.c"))] == [
        "canonlog.halted", "canonlog.ceremony_proposed", "canonlog.ceremony_approved",
        "canonlog.ceremony_approved", "canonlog.resumed"]
    resumed_event = next(e for e in ledger_events if e.event_type == "canonlog.resumed")
    evidence = json.loads(resumed_event.payload)["evidence"]
    assert [a["key_id"] for a in evidence["approvals"]] == ["w-alice", "w-bob"]
    assert evidence["min_wait_seconds"] == 0
    keys = {k.key_id: k for k in await app_log.list_keys("main")}
    assert governance_event_problems(resumed_event, keys) == []


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
