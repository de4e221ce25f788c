"""The three example tasks end to end through `canonlog write` and `canonlog audit`,
with the shipped example policy file, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from canonlog.infrastructure.keyfiles import load_private_key
from tests.gateway.conftest import EXAMPLE_POLICIES
from tests.support.cli import Cli


@pytest.fixture
def cli(database, tmp_path: Path) -> Cli:
    return Cli(database.app.uri(), database.admin.uri(), {
        "CANONLOG_DATA_DIR": str(tmp_path / "data"), "CANONLOG_ACTOR": "ops-alice",
        "CANONLOG_GATEWAY_POLICY_FILE": str(EXAMPLE_POLICIES)},
        operator_dsn=database.operator.uri())


async def test_the_example_tasks_end_to_end_through_the_cli(cli, tmp_path):
    kpi = ("write", "request", "--task", "KPI_WEEKLY_SUMMARY", "--execution-id", "kpi-w49",
           "--target", "kpi/weekly/revenue", "--operation", "upsert",
           "--payload", '{"week": "2026-W49", "revenue": 1250}', "--summary", "weekly revenue")
    assert "approved" in (await cli.ok(*kpi)).stdout
    committed = (await cli.ok("write", "commit", "--ticket", "kpi-w49", "--json")).json()
    assert not committed["replayed"]
    assert [e["event_type"] for e in committed["events"]] == ["write.upsert",
                                                              "gateway.committed"]
    again = (await cli.ok("write", "commit", "--ticket", "kpi-w49", "--json")).json()
    assert again["replayed"] and again["events"] == committed["events"]

    public = (await cli.ok("keys", "generate", "--out", str(tmp_path / "ceo.pem"))).stdout
    await cli.ok("keys", "add", "--key-id", "ceo-2026", "--owner", "ceo",
                 "--public-key", public.strip())
    for days in (7, 14):
        await cli.ok("write", "request", "--task", f"CEO_GOAL_PLAN_{days}DAY",
                     "--execution-id", f"plan-{days}", "--target",
                     f"plans/ceo/{days}day/2026-W49", "--operation", "create",
                     "--payload", f'{{"goals": ["hire"], "horizon_days": {days}}}',
                     "--summary", f"{days}-day goals", "--requested-by", "planner")
        early = await cli("write", "commit", "--ticket", f"plan-{days}")
        assert early.code == 3 and "ApprovalsMissing" in early.stderr
    # The seven-day plan is signed with the key file; the fourteen-day one offline.
    await cli.ok("write", "approve", "--ticket", "plan-7", "--key-id", "ceo-2026",
                 "--key-file", str(tmp_path / "ceo.pem"))
    statement = (await cli.ok("write", "statement", "--ticket", "plan-14")).stdout.strip()
    assert '"statement":"canonlog/gateway/approval/v1"' in statement
    signature = load_private_key(tmp_path / "ceo.pem").sign(statement.encode()).hex()
    forged = await cli("write", "approve", "--ticket", "plan-7", "--key-id", "ceo-2026",
                       "--signature", signature)
    assert forged.code == 3 and "ApprovalInvalid" in forged.stderr
    await cli.ok("write", "approve", "--ticket", "plan-14", "--key-id", "ceo-2026",
                 "--signature", signature)
    for days in (7, 14):
        await cli.ok("write", "commit", "--ticket", f"plan-{days}")
        shown = (await cli.ok("write", "show", "--ticket", f"plan-{days}", "--json")).json()
        assert shown["status"] == "committed" and shown["approvals"][0]["approver"] == "ceo"

    trail = (await cli.ok("audit", "--task", "CEO_GOAL_PLAN_7DAY", "--json")).json()
    assert [e["event_type"] for e in trail] == [
        "gateway.policy_loaded", "gateway.requested", "gateway.refused", "gateway.approved",
        "gateway.refused", "gateway.committed"]
    refused, approved, again, committed = trail[2:]
    assert (refused["step"], refused["kind"], refused["by"]) == (
        "commit", "approvals_missing", "ops-alice")
    assert (again["step"], again["kind"], again["subject"]) == (
        "approve", "already_approved", "ceo")
    assert (approved["approver"], approved["key_id"], approved["policy_version"]) == (
        "ceo", "ceo-2026", 1)
    assert committed["committed_by"] == "ops-alice"
    assert "hire" not in str(trail)  # payloads stay out of the audit trail
    lines = (await cli.ok("audit", "--since", "2000-01-01T00:00Z")).stdout
    assert "approved" in lines and "committed_by=ops-alice" in lines
    denied = await cli("write", "request", "--task", "PAYROLL", "--execution-id", "p-1",
                       "--target", "kpi/weekly/x", "--operation", "upsert", "--payload", "{}")
    assert denied.code == 3 and "WriteDenied: no policy allows task 'PAYROLL'" in denied.stderr
    assert (await cli.ok("audit", "--ticket", "p-1", "--json")).json()[-1]["kind"] == \
        "unknown_task"
    slashed = await cli("write", "request", "--task", "KPI_WEEKLY_SUMMARY", "--execution-id",
                        "kpi/w50", "--target", "kpi/weekly/x", "--operation", "upsert",
                        "--payload", "{}")
    assert slashed.code == 3 and "names its ticket in URLs" in slashed.stderr
    await cli.ok("verify")


async def test_one_door_refuses_direct_appends_to_governed_streams(cli):
    door = {"CANONLOG_GATEWAY_ONE_DOOR": "true"}
    refused = await cli("append", "--stream", "kpi/weekly/revenue", "--type", "write.upsert",
                        "--payload", "{}", env=door)
    assert refused.code == 3 and "GovernedStreamRefused" in refused.stderr
    refused = await cli("append", "--stream", "gateway-ticket/x", "--type", "gateway.approved",
                        "--payload", "{}", env=door)
    assert refused.code == 3 and "governed by the write gateway" in refused.stderr
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", "{}", env=door)
    await cli.ok("append", "--stream", "kpi/weekly/revenue", "--type", "x", "--payload", "{}")


async def test_one_door_refuses_direct_appends_under_the_gateways_execution_ids(cli):
    door = {"CANONLOG_GATEWAY_ONE_DOOR": "true"}
    refused = await cli("append", "--stream", "orders", "--type", "placed", "--payload", "{}",
                        "--execution-id", "gateway/kpi-2026-w50", env=door)
    assert refused.code == 3 and "GovernedStreamRefused" in refused.stderr
    assert "keeps for its tickets' writes" in refused.stderr
    await cli.ok("append", "--stream", "orders", "--type", "placed", "--payload", "{}",
                 "--execution-id", "kpi-2026-w50", env=door)
    assert '"execution_id":"kpi-2026-w50"' in (
        await cli.ok("read", "--stream", "orders", "--json")).stdout
