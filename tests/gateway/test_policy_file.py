"""The operator's policy file: what it may say, and each mistake named."""

from __future__ import annotations

import pytest

from canonlog.domain.errors import GatewayPolicyError
from canonlog.domain.gateway import Operation, approval_statement_v1
from canonlog.infrastructure.gateway_policy_file import load_policy_file, parse_policies
from tests.gateway.conftest import EXAMPLE_POLICIES, command

MINIMAL = '[executors]\n"kpi/*" = "ledger"\n'


def test_the_example_policies_declare_the_three_tasks():
    policies = load_policy_file(EXAMPLE_POLICIES)
    assert set(policies.tasks) == {"CEO_GOAL_PLAN_7DAY", "CEO_GOAL_PLAN_14DAY",
                                   "KPI_WEEKLY_SUMMARY"}
    assert policies.tasks["KPI_WEEKLY_SUMMARY"].approvals == 0
    assert policies.tasks["KPI_WEEKLY_SUMMARY"].operations == {Operation.UPSERT}
    assert policies.tasks["CEO_GOAL_PLAN_14DAY"].approvals == 1
    assert policies.approver_of_key("ceo-2026").name == "ceo"
    assert policies.governs("kpi/weekly/x") and policies.governs("gateway-ticket/e")
    assert not policies.governs("orders")


def test_the_recorded_document_does_not_depend_on_layout_or_comments():
    a = parse_policies(MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['upsert']\n")
    b = parse_policies("# a comment\n" + MINIMAL.replace(" = ", "=") +
                       '[tasks.T]\noperations=["upsert"]\ntargets=["kpi/*"]\n')
    assert a.sha256 == b.sha256


@pytest.mark.parametrize(("text", "message"), [
    ("executors = [", "not valid TOML"),
    ("", "executors: Field required"),
    (MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['merge']\n", "tasks.T.operations.0"),
    (MINIMAL + "[tasks.T]\ntargets = []\noperations = ['upsert']\n", "tasks.T.targets"),
    (MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['upsert']\nextra = 1\n",
     "tasks.T.extra: Extra inputs are not permitted"),
    (MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['upsert']\napprovals = 1\n",
     "needs approvals that no approver can give"),
    (MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['upsert']\napprovers = ['x']\n",
     "unknown approver"),
    (MINIMAL + "[approvers.a]\nkey_ids = ['k']\n[approvers.b]\nkey_ids = ['k']\n",
     "listed for 'a' and 'b'"),
    (MINIMAL + "[tasks.T]\ntargets = ['kpi/*']\noperations = ['upsert']\n"
     "max_payload_bytes = 2000000\n", "max_payload_bytes"),
])
def test_a_mistake_in_the_file_is_named(text, message):
    with pytest.raises(GatewayPolicyError, match=message):
        parse_policies(text)


def test_an_unreadable_file_is_a_policy_error(tmp_path):
    with pytest.raises(GatewayPolicyError, match="cannot read"):
        load_policy_file(tmp_path / "missing.toml")


def test_the_statement_binds_the_ticket_and_its_content():
    from datetime import UTC, datetime
    at = datetime(2026, 12, 3, 9, tzinfo=UTC)
    base = approval_statement_v1(ledger_id="main", command=command(), policy_version=1,
                                 requested_seq=42, expires_at=at)
    assert base.startswith(b'{"execution_id":"kpi-2026-w49","expires_at":"2026-12-03T09:00:00.'
                           b'000000Z"')
    assert b'"statement":"canonlog/gateway/approval/v1"' in base
    for other in (
        approval_statement_v1(ledger_id="main", command=command(), policy_version=1,
                              requested_seq=43, expires_at=at),
        approval_statement_v1(ledger_id="main", command=command(payload={"x": 1}),
                              policy_version=1, requested_seq=42, expires_at=at),
        approval_statement_v1(ledger_id="main", command=command(), policy_version=2,
                              requested_seq=42, expires_at=at),
    ):
        assert other != base
