"""Ceremonies over HTTP: read with their approvals, failovers proposed with the operate scope,
approvals signed offline by a witness and submitted with the approve scope."""

from __future__ import annotations

from canonlog.domain.ceremony import resume_statement_v1
from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.http.conftest import running_service
from tests.http.test_api import stored_count
from tests.http.test_errors import assert_standard_error
from tests.support.ceremony import policy_of
from tests.support.keys import seeded_key

WITNESS = seeded_key(7)
OTHER_WITNESS = seeded_key(9)
STRANGER = seeded_key(8)


async def establish_policy(admin_dsn: str) -> None:
    """Two witnesses, two approvals needed: the administrator establishes it, as in production."""
    log = await AsyncpgEventLog.connect(admin_dsn)
    try:
        await log.establish_policy("main", policy_of(
            ("w-1", "witness-one", WITNESS), ("w-2", "witness-two", OTHER_WITNESS),
            threshold=2), "admin")
    finally:
        await log.close()


def operated(database):
    """The service's settings name the operator login, which proposals and approvals run on."""
    return {"operator_dsn": database.operator.uri()}


async def test_a_failover_is_proposed_read_and_approved_with_a_signature_made_offline(
        database, tmp_path, auth_config, tokens):
    async with running_service(database, tmp_path, ServiceConfig(auth=auth_config),
                               **operated(database)) as service, service.client() as client:
        await establish_policy(database.admin.uri())
        reader, operator = tokens.bearer("read"), tokens.bearer("read operate")
        approver = tokens.bearer("approve")
        assert (await client.get("/v1/ceremonies", headers=reader)).json()["ceremonies"] == []

        refused = await client.post("/v1/ceremonies/failover", json={"target_writer_id": "writer-2"},
                                    headers=tokens.bearer("read append approve"))
        assert assert_standard_error(refused, 403, "insufficient_scope")["details"] == {
            "required_scope": "operate"}
        proposed = await client.post("/v1/ceremonies/failover",
                                     json={"target_writer_id": "writer-2"}, headers=operator)
        assert proposed.status_code == 201, proposed.text
        ceremony = proposed.json()
        assert proposed.headers["location"] == f"/v1/ceremonies/{ceremony['proposal_id']}"
        assert (ceremony["kind"], ceremony["status"], ceremony["target_writer_id"]) == (
            "failover", "open", "writer-2")
        assert ceremony["proposed_by"] == "alice"
        assert ceremony["approvals"] == []
        path = f"/v1/ceremonies/{ceremony['proposal_id']}/approvals"

        # The witness signs the statement offline, with a key the service never sees.
        signature = WITNESS.sign(bytes.fromhex(ceremony["statement"])).hex()
        body = {"key_id": "w-1", "signature": signature}
        assert_standard_error(await client.post(path, json=body, headers=operator),
                              403, "insufficient_scope")
        before = await stored_count(service.app_dsn)
        forged = {"key_id": "w-1", "signature": STRANGER.sign(
            bytes.fromhex(ceremony["statement"])).hex()}
        assert_standard_error(await client.post(path, json=forged, headers=approver),
                              409, "approval_refused")
        assert_standard_error(await client.post(path, json={"key_id": "w-1", "signature": "zz"},
                                                headers=approver), 422, "invalid_request")
        assert await stored_count(service.app_dsn) == before

        approved = await client.post(path, json=body, headers=approver)
        assert approved.status_code == 201, approved.text
        (approval,) = approved.json()["approvals"]
        assert approval | {"approved_seq": 0} == {
            "key_id": "w-1", "owner_id": "witness-one", "approved_by": "alice", "approved_seq": 0,
            "signature": signature, "counts": True, "problem": None}
        assert approved.json()["witnesses"] == 1
        assert "1 of the 2" in approved.json()["blocker"]

        one = await client.get(f"/v1/ceremonies/{ceremony['proposal_id']}", headers=reader)
        assert one.json() == approved.json()
        listed = (await client.get("/v1/ceremonies", headers=reader)).json()["ceremonies"]
        assert listed == [approved.json()]
        assert_standard_error(await client.get("/v1/ceremonies/9999", headers=reader),
                              404, "ceremony_not_found")


async def test_resuming_a_halt_is_approved_over_http_naming_the_halt_event(
        database, tmp_path, auth_config, tokens):
    async with running_service(database, tmp_path, ServiceConfig(auth=auth_config),
                               **operated(database)) as service, \
            service.client(headers=tokens.bearer("read operate approve")) as client:
        await establish_policy(database.admin.uri())
        nothing_to_resume = await client.post("/v1/ceremonies/resume/approvals", json={
            "key_id": "w-1", "signature": "00" * 64})
        assert nothing_to_resume.status_code == 409
        assert (await client.post("/v1/halt", json={"reason": "drill"})).status_code == 200
        halt = (await client.get("/v1/head")).json()
        signature = WITNESS.sign(resume_statement_v1(
            ledger_id="main", halt_sequence=halt["sequence"], halt_hash=bytes.fromhex(halt["hash"])))
        approved = await client.post("/v1/ceremonies/resume/approvals", json={
            "key_id": "w-1", "signature": signature.hex()})
        assert approved.status_code == 201, approved.text
        ceremony = approved.json()
        assert (ceremony["kind"], ceremony["halt_sequence"], ceremony["halt_hash"]) == (
            "resume", halt["sequence"], halt["hash"])
        assert [a["counts"] for a in ceremony["approvals"]] == [True]


async def test_without_an_operator_login_ceremonies_are_read_but_proposals_refused(
        database, tmp_path, auth_config, tokens):
    async with running_service(database, tmp_path, ServiceConfig(auth=auth_config)) as service, \
            service.client(headers=tokens.bearer("read operate approve")) as client:
        assert (await client.get("/v1/ceremonies")).json()["ceremonies"] == []
        refused = await client.post("/v1/ceremonies/failover", json={"target_writer_id": "w2"})
        assert "CANONLOG_OPERATOR_DSN" in assert_standard_error(
            refused, 503, "operator_login_missing")["message"]
