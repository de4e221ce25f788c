"""Authorization by a Rego policy: decided in-process, failing closed, every decision logged."""

from __future__ import annotations

import hashlib

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from canonlog.infrastructure.bootstrap import service_config
from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.http.authz import PolicyAuthorizer, PolicyError, default_policy, load_policy
from canonlog.infrastructure.settings import Settings
from tests.http.conftest import running_service
from tests.http.test_api import stored_count
from tests.http.test_errors import assert_standard_error

AUDIT_POLICY = """
package canonlog.authz

import rego.v1

default allow := false

allow if {
    input.action != "append"
    "read" in input.scopes
}

allow if {
    input.action == "append"
    "append" in input.scopes
    not startswith(input.stream, "audit/")
}

allow if {
    input.action == "append"
    input.subject == "auditor"
    input.task == "audit"
}

reasons contains "only the auditor appends to audit/ streams, under the audit task" if {
    input.action == "append"
    startswith(input.stream, "audit/")
    not allow
}
"""


async def test_a_policy_decides_each_request_denies_with_its_reasons_and_logs_every_decision(
        database, tmp_path, auth_config, tokens):
    authorizer = PolicyAuthorizer("audit.rego", AUDIT_POLICY)
    config = ServiceConfig(auth=auth_config, authorizer=authorizer)
    body = {"events": [{"type": "checked", "payload": {}}], "task_id": "audit"}
    async with running_service(database, tmp_path, config) as service, service.client() as client:
        with capture_logs(processors=[merge_contextvars]) as logs:
            before = await stored_count(service.app_dsn)
            denied = await client.post("/v1/streams/audit/2026/events", json=body,
                                       headers={**tokens.bearer(), "X-Request-ID": "deny-1"})
            assert await stored_count(service.app_dsn) == before
            allowed = await client.post(
                "/v1/streams/audit/2026/events", json=body,
                headers={"Authorization": f"Bearer {tokens.rsa(sub='auditor')}",
                         "X-Request-ID": "allow-1"})
            other = await client.post("/v1/streams/orders/events", json=body,
                                      headers=tokens.bearer())
    error = assert_standard_error(denied, 403, "forbidden_by_policy")
    assert "only the auditor" in error["message"]
    assert error["details"]["policy_digest"] == hashlib.sha256(AUDIT_POLICY.encode()).hexdigest()
    assert allowed.status_code == 201, allowed.text
    assert other.status_code == 201, other.text

    decisions = {e["request_id"]: e for e in logs if e["event"] == "authorization decision"}
    assert decisions["deny-1"]["decision"] == "deny"
    assert decisions["allow-1"]["decision"] == "allow"
    for entry in (decisions["deny-1"], decisions["allow-1"]):
        assert entry["policy_digest"] == authorizer.digest
        assert entry["action"] == "append"
        assert entry["stream"] == "audit/2026"
        assert entry["task"] == "audit"
        assert entry["ledger"] == "main"
    assert decisions["allow-1"]["subject"] == "auditor"


async def test_the_shipped_policy_grants_each_action_to_its_scope(database, tmp_path, auth_config,
                                                                   tokens):
    authorizer = PolicyAuthorizer(*default_policy())
    config = ServiceConfig(auth=auth_config, authorizer=authorizer)
    async with running_service(database, tmp_path, config) as service, service.client() as client:
        head = await client.get("/v1/head", headers=tokens.bearer("read"))
        appended = await client.post("/v1/streams/s/events", headers=tokens.bearer("append"),
                                     json={"events": [{"type": "x", "payload": {}}]})
    assert head.status_code == 200
    assert appended.status_code == 201
    decide = authorizer.decide
    assert decide({"subject": "a", "scopes": ["append", "read"], "ledger": "main", "stream": None,
                   "task": None, "action": "halt"}).reasons == ("halt needs the operate scope",)
    assert decide({"subject": "a", "scopes": ["operate"], "ledger": "main", "stream": None,
                   "task": None, "action": "start_verification"}).allow


def test_a_policy_that_does_not_compile_is_refused_and_one_that_fails_denies(tmp_path):
    with pytest.raises(PolicyError, match="does not compile"):
        PolicyAuthorizer("broken.rego", "package canonlog.authz\nallow if {")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.rego")
    failing = PolicyAuthorizer("failing.rego", "package canonlog.authz\nimport rego.v1\n"
                                               "allow if { 1 / 0 }\n")
    assert failing.decide({"action": "head"}).allow is False
    not_boolean = PolicyAuthorizer("yes.rego", 'package canonlog.authz\nallow := "yes"\n')
    assert not_boolean.decide({"action": "head"}).allow is False


def test_settings_turn_policy_authorization_on(tmp_path):
    policy = tmp_path / "audit.rego"
    policy.write_text(AUDIT_POLICY)
    base = {"data_dir": tmp_path, "auth_required": False}
    assert service_config(Settings(**base)).authorizer is None
    shipped = service_config(Settings(**base, authz_required=True)).authorizer
    assert shipped is not None
    assert shipped.name == "default.rego"
    custom = service_config(Settings(**base, authz_required=True, authz_policy_file=policy))
    assert custom.authorizer is not None
    assert custom.authorizer.digest == hashlib.sha256(AUDIT_POLICY.encode()).hexdigest()
