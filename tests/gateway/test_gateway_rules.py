"""The gateway's rules: requests, approvals, commits, audit; each against a real
PostgreSQL and against the in-memory ledger of canonlog.testing."""

from __future__ import annotations

import pytest

from canonlog.application.chain_verification import verify_chain
from canonlog.application.gateway_audit import audit_trail
from canonlog.domain.errors import (
    ApprovalInvalid,
    ApprovalsMissing,
    IdempotencyConflict,
    InvalidCommand,
    TicketClosed,
    TicketExpired,
    TicketNotFound,
    WriteDenied,
)
from canonlog.domain.gateway import ticket_stream
from canonlog.domain.tickets import TicketStatus, payload_of
from tests.gateway.conftest import COO_KEY, command, plan_command
from tests.support.keys import seeded_key


@pytest.fixture(params=["postgres", "memory"])
def gw(request):
    return request.getfixturevalue(f"{request.param}_gw")


async def test_a_write_without_approval_commits_the_write_and_its_audit_event_together(gw):
    ticket = await gw.gateway.request_write(command())
    assert ticket.status is TicketStatus.APPROVED
    result = await gw.gateway.commit_write("kpi-2026-w49", "committer")
    write, audit = result.events
    assert (write.stream_id, write.event_type) == ("kpi/weekly/revenue", "write.upsert")
    assert audit.event_type == "gateway.committed" and audit.sequence == write.sequence + 1
    # Recorded under the gateway's prefix: no direct append can take the id first.
    assert write.execution_id == audit.execution_id == "gateway/kpi-2026-w49"
    assert b"1250" not in audit.payload and b"payload_sha256" in audit.payload
    assert (await gw.gateway.ticket("kpi-2026-w49")).status is TicketStatus.COMMITTED


async def test_committing_again_returns_the_original_result_and_writes_nothing(gw):
    await gw.gateway.request_write(command())
    first = await gw.gateway.commit_write("kpi-2026-w49", "committer")
    head = await gw.log.head("main")
    again = await gw.gateway.commit_write("kpi-2026-w49", "committer")
    assert again.replayed and [e.sequence for e in again.events] == [
        e.sequence for e in first.events]
    assert await gw.log.head("main") == head


async def test_the_same_request_twice_is_one_ticket_and_another_command_conflicts(gw):
    first = await gw.gateway.request_write(command())
    assert (await gw.gateway.request_write(command())).requested_seq == first.requested_seq
    head = await gw.log.head("main")
    with pytest.raises(IdempotencyConflict, match="kpi-2026-w49"):
        await gw.gateway.request_write(command(payload={"week": "2026-W49", "revenue": 1}))
    assert await gw.log.head("main") == head


async def test_a_plan_needs_an_executive_signature_before_it_is_written(gw):
    ticket = await gw.gateway.request_write(plan_command())
    assert ticket.status is TicketStatus.PENDING and ticket.approvals_required == 1
    with pytest.raises(ApprovalsMissing, match="0 of the 1"):
        await gw.gateway.commit_write("plan-7-001", "committer")
    assert await gw.events("plans/ceo/7day/2026-W49") == []
    ticket = await gw.gateway.approve("plan-7-001", "ceo-2026", await gw.sign("plan-7-001"))
    assert ticket.status is TicketStatus.APPROVED
    assert [a.approver for a in ticket.approvals] == ["ceo"]
    result = await gw.gateway.commit_write("plan-7-001", "committer")
    assert result.events[0].event_type == "write.create"


@pytest.mark.parametrize(("change", "kind"), [
    ({"task": "UNKNOWN_TASK"}, "unknown_task"),
    ({"target": "payroll/2026"}, "unknown_target"),
    ({"target": "plans/ceo/7day/x"}, "target_not_allowed"),
    ({"operation": "delete"}, "operation_not_allowed"),
    ({"payload": {"blob": "x" * 20000}}, "payload_too_large"),
])
async def test_a_denial_names_the_rule_is_audited_and_writes_nothing_else(gw, change, kind):
    with pytest.raises(WriteDenied) as denied:
        await gw.gateway.request_write(command(**change))
    assert denied.value.kind == kind
    (event,) = await gw.events(ticket_stream("kpi-2026-w49"))
    assert event.event_type == "gateway.denied" and kind.encode() in event.payload
    with pytest.raises(WriteDenied):  # the same command again: the same denial, recorded once
        await gw.gateway.request_write(command(**change))
    assert len(await gw.events(ticket_stream("kpi-2026-w49"))) == 1
    with pytest.raises(WriteDenied):
        await gw.gateway.commit_write("kpi-2026-w49", "committer")


@pytest.mark.parametrize(("fields", "message"), [
    ({"task_id": None}, "task_id must be a string"),
    ({"task_id": ""}, "task_id must not be empty"),
    ({"execution_id": None}, "execution_id must be a string"),
    ({"execution_id": "x" * 201}, "execution_id is 201 characters"),
    ({"execution_id": "run/42"}, r"names its ticket in URLs.*contains /\)"),
    ({"execution_id": "a?b#c"}, r"contains # \?\)"),
    ({"execution_id": "50%"}, "contains %"),
    ({"execution_id": ".."}, "may not be . or .."),
    ({"operation": "merge"}, "operation must be one of"),
    ({"target": "$ledger"}, "keeps for itself"),
    ({"payload": '{"a": NaN}'}, "NaN"),
    ({"payload": '{"a": 1, "a": 2}'}, "twice"),
    ({"payload": "[1]"}, "must be a JSON object"),
    ({"requested_by": None}, "requested_by must be a string"),
])
def test_a_malformed_command_is_refused_naming_the_problem(fields, message):
    from canonlog.domain.gateway import WriteCommand
    values = {"task_id": "KPI_WEEKLY_SUMMARY", "execution_id": "e-1", "target": "kpi/weekly/x",
              "operation": "upsert", "payload": {}, "summary": "", "requested_by": "job"}
    with pytest.raises(InvalidCommand, match=message):
        WriteCommand.create(**(values | fields))


async def test_bad_approvals_are_refused_and_each_decision_recorded_once(gw):
    await gw.gateway.request_write(plan_command())
    await gw.gateway.request_write(plan_command("plan-7-002", target="plans/ceo/7day/2026-W50"))
    signature = await gw.sign("plan-7-001")
    attempts = [("stranger", signature, "not an approver's key"),
                ("stranger-2", signature, "not an approver's key"),
                ("ceo-2026", await gw.sign("plan-7-002"), "does not verify"),
                ("ceo-2026", seeded_key(9).sign(b"anything"), "does not verify")]
    for key_id, bad, message in attempts * 2:
        with pytest.raises(ApprovalInvalid, match=message):
            await gw.gateway.approve("plan-7-001", key_id, bad, "mallory")
    await gw.gateway.approve("plan-7-001", "ceo-2026", signature, "ceo-assistant")
    for _ in range(2):
        with pytest.raises(ApprovalInvalid, match="approved ticket plan-7-001 already"):
            await gw.gateway.approve("plan-7-001", "ceo-2026", signature)
    events = await gw.events(ticket_stream("plan-7-001"))
    refused = [payload_of(e) for e in events if e.event_type == "gateway.refused"]
    # Unknown keys count as one decision per ticket, whatever key id is tried.
    assert [(r["kind"], r["subject"], r["by"]) for r in refused] == [
        ("unknown_key", "", "mallory"), ("bad_signature", "ceo-2026", "mallory"),
        ("already_approved", "ceo", None)]
    assert all(r["step"] == "approve" and r["policy_version"] == 1 for r in refused)
    assert "does not verify" in refused[1]["reason"]
    assert (await gw.gateway.ticket("plan-7-001")).status is TicketStatus.APPROVED
    with pytest.raises(TicketNotFound):
        await gw.gateway.approve("plan-7-999", "ceo-2026", signature)
    assert await gw.events(ticket_stream("plan-7-999")) == []


async def test_a_commit_refused_for_missing_approvals_is_recorded_once_per_count(gw):
    await gw.gateway.request_write(plan_command())
    for committer in ("planner", "planner", "someone-else"):
        with pytest.raises(ApprovalsMissing, match="0 of the 1"):
            await gw.gateway.commit_write("plan-7-001", committer)
    events = await gw.events(ticket_stream("plan-7-001"))
    (refused,) = [payload_of(e) for e in events if e.event_type == "gateway.refused"]
    assert (refused["step"], refused["kind"], refused["subject"], refused["by"]) == (
        "commit", "approvals_missing", "0/1", "planner")
    trail = await audit_trail(gw.log, "main", execution_id="plan-7-001")
    assert [e.event_type for e in trail][-1] == "gateway.refused"


async def test_who_committed_is_in_the_commit_and_a_retry_by_another_replays_it(gw):
    await gw.gateway.request_write(command())
    first = await gw.gateway.commit_write("kpi-2026-w49", "alice")
    head = await gw.log.head("main")
    for committer in ("alice", "bob"):
        again = await gw.gateway.commit_write("kpi-2026-w49", committer)
        assert again.replayed and again.events == first.events
    assert await gw.log.head("main") == head
    assert payload_of(first.events[1])["committed_by"] == "alice"
    (entry,) = [e for e in await audit_trail(gw.log, "main", execution_id="kpi-2026-w49")
                if e.event_type == "gateway.committed"]
    assert entry.facts["committed_by"] == "alice" and "committed_by=alice" in entry.line()


async def test_events_of_another_stream_under_a_ticket_execution_id_do_not_commit_it(gw):
    from canonlog.domain.events import AppendRequest, NewEvent, WriteContext
    await gw.gateway.request_write(plan_command())
    await gw.writer.append(AppendRequest.create(
        "elsewhere", [NewEvent.create("gateway.committed", {"forged": True})],
        context=WriteContext(execution_id="plan-7-001")))
    assert (await gw.gateway.ticket("plan-7-001")).status is TicketStatus.PENDING


async def test_a_direct_append_under_a_ticket_execution_id_does_not_block_its_commit(gw):
    from canonlog.domain.events import AppendRequest, NewEvent, WriteContext
    for execution_id in ("kpi-2026-w49", "kpi-2026-w49-later"):
        # Taken before the ticket is requested, and between request and commit.
        if execution_id.endswith("later"):
            await gw.gateway.request_write(command(execution_id=execution_id))
        await gw.writer.append(AppendRequest.create(
            "elsewhere", [NewEvent.create("placed", {"by": "someone else"})],
            context=WriteContext(execution_id=execution_id)))
        if not execution_id.endswith("later"):
            await gw.gateway.request_write(command(execution_id=execution_id))
        result = await gw.gateway.commit_write(execution_id, "committer")
        assert not result.replayed and result.events[0].stream_id == "kpi/weekly/revenue"
        assert (await gw.gateway.ticket(execution_id)).status is TicketStatus.COMMITTED


async def test_a_tickets_audit_is_the_chains_audit_of_it_without_events_forged_elsewhere(gw):
    from canonlog.domain.events import AppendRequest, NewEvent
    await gw.gateway.request_write(plan_command())
    await gw.gateway.approve("plan-7-001", "ceo-2026", await gw.sign("plan-7-001"))
    await gw.gateway.commit_write("plan-7-001", "planner")
    await gw.gateway.request_write(command())
    await gw.writer.append(AppendRequest.create("elsewhere", [NewEvent.create(
        "gateway.approved", {"execution_id": "plan-7-001", "approver": "mallory"})]))
    whole = [e for e in await audit_trail(gw.log, "main")
             if e.execution_id in ("plan-7-001", None)]
    assert [e.facts.get("approver") for e in whole
            if e.event_type == "gateway.approved"] == ["ceo", "mallory"]
    ticket = await audit_trail(gw.log, "main", execution_id="plan-7-001")
    assert ticket == [e for e in whole if e.stream_id != "elsewhere"]
    assert [e.event_type for e in ticket][-3:] == [
        "gateway.requested", "gateway.approved", "gateway.committed"]


async def test_a_revoked_or_unregistered_approver_key_does_not_count(gw):
    await gw.gateway.request_write(plan_command())
    await gw.logs[0].revoke_key("main", "coo-2026", "ops", "left the company")
    with pytest.raises(ApprovalInvalid, match="revoked"):
        await gw.gateway.approve("plan-7-001", "coo-2026", await gw.sign("plan-7-001", COO_KEY))
    (refused,) = [payload_of(e) for e in await gw.events(ticket_stream("plan-7-001"))
                  if e.event_type == "gateway.refused"]
    assert (refused["kind"], refused["subject"]) == ("key_revoked", "coo-2026")


async def test_a_rejected_ticket_cannot_be_approved_or_committed(gw):
    await gw.gateway.request_write(plan_command())
    ticket = await gw.gateway.reject("plan-7-001", "not this week", "ceo")
    assert ticket.status is TicketStatus.REJECTED
    with pytest.raises(TicketClosed, match="rejected"):
        await gw.gateway.approve("plan-7-001", "ceo-2026", await gw.sign("plan-7-001"))
    with pytest.raises(TicketClosed, match="rejected"):
        await gw.gateway.commit_write("plan-7-001", "committer")
    assert await gw.events("plans/ceo/7day/2026-W49") == []


async def test_a_commit_after_expiry_is_refused_and_the_expiry_recorded(gw):
    await gw.gateway.request_write(plan_command())
    await gw.gateway.approve("plan-7-001", "ceo-2026", await gw.sign("plan-7-001"))
    gw.clock.advance(172800)
    with pytest.raises(TicketExpired):
        await gw.gateway.commit_write("plan-7-001", "committer")
    with pytest.raises(TicketExpired):
        await gw.gateway.approve("plan-7-001", "coo-2026", await gw.sign("plan-7-001", COO_KEY))
    types = [e.event_type for e in await gw.events(ticket_stream("plan-7-001"))]
    assert types == ["gateway.requested", "gateway.staged", "gateway.approved", "gateway.expired"]
    assert await gw.events("plans/ceo/7day/2026-W49") == []


async def test_a_changed_policy_is_a_new_version_and_closes_older_tickets(gw):
    from canonlog.infrastructure.gateway_policy_file import parse_policies
    from tests.gateway.conftest import EXAMPLE_POLICIES
    await gw.gateway.request_write(command())
    assert gw.gateway.policy.version == 1
    text = EXAMPLE_POLICIES.read_text().replace("max_payload_bytes = 16384",
                                                "max_payload_bytes = 8192")
    version = await gw.gateway.load_policies(parse_policies(text), "ops")
    assert version.version == 2
    assert (await gw.gateway.load_policies(parse_policies(text), "ops")).version == 2
    with pytest.raises(TicketClosed, match="policy version 1"):
        await gw.gateway.commit_write("kpi-2026-w49", "committer")


async def test_the_gateway_events_verify_like_any_other(gw):
    await gw.gateway.request_write(command())
    await gw.gateway.commit_write("kpi-2026-w49", "committer")
    with pytest.raises(WriteDenied):
        await gw.gateway.request_write(command(task="NOPE", execution_id="x"))
    report = await verify_chain(gw.log, "main")
    assert report.ok and report.events_checked == (await gw.log.head("main")).sequence


async def test_an_approver_key_not_registered_in_the_ledger_does_not_count(gw):
    from canonlog.infrastructure.gateway_policy_file import parse_policies
    from tests.gateway.conftest import EXAMPLE_POLICIES
    text = EXAMPLE_POLICIES.read_text() + (
        '\n[approvers.cfo]\nkey_ids = ["cfo-2026"]\nroles = ["executive"]\n'
        '\n[approvers.impostor]\nkey_ids = ["ceo-2025"]\nroles = ["executive"]\n')
    await gw.gateway.load_policies(parse_policies(text), "ops")
    await gw.logs[0].add_key("main", "ceo-2025", "agent", "ceo", b"\x01" * 32, "ops")
    await gw.gateway.request_write(plan_command())
    signature = await gw.sign("plan-7-001")
    with pytest.raises(ApprovalInvalid, match="not registered in ledger main"):
        await gw.gateway.approve("plan-7-001", "cfo-2026", signature)
    with pytest.raises(ApprovalInvalid, match="registered to 'ceo'"):
        await gw.gateway.approve("plan-7-001", "ceo-2025", signature)


async def test_a_ticket_written_around_the_gateway_gains_nothing(gw):
    """Without the one-door setting anyone with append rights can write a ticket stream;
    the commit still judges it by the policy and the approvers' signatures."""
    from canonlog.domain.errors import TamperDetected
    from canonlog.domain.events import AppendRequest, NewEvent
    forged = plan_command("plan-forged", target="plans/ceo/7day/forged")
    requested = {**forged.audit_fields(), "policy_version": 1, "policy_sha256": "x",
                 "approvals_required": 0, "expires_at": "2999-01-01T00:00:00.000000Z"}
    approved = {**forged.audit_fields(), "approver": "ceo", "key_id": "ceo-2026",
                "roles": ["executive"], "signature": "00" * 64, "policy_version": 1}
    await gw.writer.append(AppendRequest.create(ticket_stream("plan-forged"), [
        NewEvent.create("gateway.requested", requested),
        NewEvent.create("gateway.staged", {"payload": {"goals": ["ship the gateway"],
                                                       "horizon_days": 7}}),
        NewEvent.create("gateway.approved", approved)]))
    with pytest.raises(ApprovalsMissing, match="0 of the 1"):
        await gw.gateway.commit_write("plan-forged", "committer")
    assert await gw.events("plans/ceo/7day/forged") == []
    await gw.writer.append(AppendRequest.create(ticket_stream("garbage"), [
        NewEvent.create("gateway.requested", {"task_id": 1})]))
    with pytest.raises(TamperDetected, match="does not"):
        await gw.gateway.commit_write("garbage", "committer")
