"""The gateway over HTTP: the example tasks end to end, scopes checked by the service's
authorization (its default Rego policy), and each refusal mapped to its status."""

from __future__ import annotations

from urllib.parse import quote

from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.http.authz import PolicyAuthorizer, load_policy
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.gateway.conftest import CEO_KEY, EXAMPLE_POLICIES, register_approvers
from tests.http.conftest import running_service

KPI = {"task_id": "KPI_WEEKLY_SUMMARY", "execution_id": "kpi-w49", "target": "kpi/weekly/revenue",
       "operation": "upsert", "payload": {"week": "2026-W49", "revenue": 1250},
       "summary": "weekly revenue"}


def plan(days: int) -> dict:
    return {"task_id": f"CEO_GOAL_PLAN_{days}DAY", "execution_id": f"plan-{days}",
            "target": f"plans/ceo/{days}day/2026-W49", "operation": "create",
            "payload": {"goals": ["hire"], "horizon_days": days}, "summary": "goals"}


async def test_the_example_tasks_end_to_end_over_http(database, tmp_path, tokens, auth_config):
    config = ServiceConfig(auth=auth_config, authorizer=PolicyAuthorizer(*load_policy(None)))
    operator = await AsyncpgEventLog.connect(database.operator.uri(), max_size=1)
    try:
        await _example_tasks(database, tmp_path, tokens, config, operator)
    finally:
        await operator.close()


async def _example_tasks(database, tmp_path, tokens, config, operator):
    async with running_service(database, tmp_path, config,
                               gateway_policy_file=EXAMPLE_POLICIES) as service, \
            service.client() as http:
        everyone = tokens.bearer("read request approve commit")
        requester, reader = tokens.bearer("request"), tokens.bearer("read")
        assert (await http.post("/v1/gateway/tickets", json=KPI, headers=reader)).status_code \
            == 403
        created = await http.post("/v1/gateway/tickets", json=KPI, headers=requester)
        assert created.status_code == 201 and created.json()["status"] == "approved"
        assert created.json()["requested_by"] == "alice"
        commit = "/v1/gateway/tickets/kpi-w49/commit"
        assert (await http.post(commit, headers=requester)).status_code == 403
        first = await http.post(commit, headers=tokens.bearer("commit"))
        again = await http.post(commit, headers=tokens.bearer("commit"))
        assert first.status_code == again.status_code == 200
        assert again.json()["replayed"] and again.json()["events"] == first.json()["events"]

        await register_approvers(operator)
        for days in (7, 14):
            assert (await http.post("/v1/gateway/tickets", json=plan(days),
                                    headers=everyone)).status_code == 201
            early = await http.post(f"/v1/gateway/tickets/plan-{days}/commit", headers=everyone)
            assert early.status_code == 409
            assert early.json()["error"]["code"] == "approvals_missing"
            statement = (await http.get(f"/v1/gateway/tickets/plan-{days}/statement",
                                        headers=reader)).json()["statement"]
            approval = {"key_id": "ceo-2026", "signature": CEO_KEY.sign(statement.encode()).hex()}
            url = f"/v1/gateway/tickets/plan-{days}/approvals"
            assert (await http.post(url, json=approval, headers=requester)).status_code == 403
            approved = await http.post(url, json=approval, headers=tokens.bearer("approve"))
            assert approved.status_code == 201 and approved.json()["status"] == "approved"
            twice = await http.post(url, json=approval, headers=tokens.bearer("approve"))
            assert twice.status_code == 409 and twice.json()["error"]["code"] == "approval_invalid"
            done = await http.post(f"/v1/gateway/tickets/plan-{days}/commit", headers=everyone)
            assert done.status_code == 200
            assert done.json()["events"][0]["stream_id"] == f"plans/ceo/{days}day/2026-W49"

        trail = (await http.get("/v1/gateway/audit", params={"task": "CEO_GOAL_PLAN_14DAY"},
                                headers=reader)).json()
        approvals = [e for e in trail if e["event_type"] == "gateway.approved"]
        assert [(e["approver"], e["policy_version"]) for e in approvals] == [("ceo", 1)]
        ticket = (await http.get("/v1/gateway/tickets/plan-14", headers=reader)).json()
        assert ticket["status"] == "committed"


async def test_bad_requests_over_http_name_the_problem_and_write_nothing(database, tmp_path,
                                                                        tokens, auth_config):
    config = ServiceConfig(auth=auth_config)
    async with running_service(database, tmp_path, config, gateway_policy_file=EXAMPLE_POLICIES,
                               gateway_one_door=True) as service, service.client() as http:
        everyone = tokens.bearer("read append request approve commit")
        head = (await http.get("/v1/head", headers=everyone)).json()
        missing = {k: v for k, v in KPI.items() if k != "execution_id"}
        refused = await http.post("/v1/gateway/tickets", json=missing, headers=everyone)
        assert refused.status_code == 422 and "execution_id" in refused.text
        bad_op = await http.post("/v1/gateway/tickets", json=KPI | {"operation": "merge"},
                                 headers=everyone)
        assert bad_op.status_code == 422 and bad_op.json()["error"]["code"] == "invalid_command"
        for unsafe in ("run/42", "run?42", "run%2F42"):
            slashed = await http.post("/v1/gateway/tickets", json=KPI | {"execution_id": unsafe},
                                      headers=everyone)
            assert slashed.status_code == 422
            assert slashed.json()["error"]["code"] == "invalid_command"
            assert "names its ticket in URLs" in slashed.json()["error"]["message"]
        assert (await http.get("/v1/head", headers=everyone)).json() == head
        unknown = await http.post("/v1/gateway/tickets", json=KPI | {"task_id": "PAYROLL"},
                                  headers=everyone)
        assert unknown.status_code == 403
        assert unknown.json()["error"] == {"code": "write_denied", "details": {
            "kind": "unknown_task"}, "message": "no policy allows task 'PAYROLL'"}
        assert (await http.get("/v1/gateway/tickets/none", headers=everyone)).status_code == 404
        direct = await http.post(f"/v1/streams/{quote('kpi/weekly/revenue', safe='')}/events",
                                 json={"events": [{"type": "write.upsert", "payload": {}}]},
                                 headers=everyone)
        assert direct.status_code == 403
        assert direct.json()["error"]["code"] == "governed_stream_refused"
        other = await http.post("/v1/streams/orders/events",
                                json={"events": [{"type": "placed", "payload": {}}]},
                                headers=everyone)
        assert other.status_code == 201
