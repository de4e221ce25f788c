"""The verifier checks agent signatures against keys it learns from the chain itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from canonlog.application.chain_verification import verify_chain, verify_events
from canonlog.application.ports import append_one
from canonlog.domain.errors import InvalidEvent
from canonlog.domain.events import AppendRequest, Head, NewEvent, WriteContext
from canonlog.domain.signing import sign_event
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.testing import open_in_memory
from tests.support.chains import rechain
from tests.support.keys import public_bytes

PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = public_bytes(PRIVATE)


def signed(stream: str, agent: str = "agent-7", key: str = "k-1", payload=None) -> AppendRequest:
    context = WriteContext(agent_id=agent)
    event = sign_event(NewEvent.create("approved", payload or {"n": 1}), private_key=PRIVATE,
                       signing_key_id=key, ledger_id="main", stream_id=stream, context=context)
    return AppendRequest.create(stream, [event], context=context)


@pytest.fixture
async def ledger():
    log = MemoryEventLog()
    grant = await log.acquire_grant("main", "w")
    await log.add_key("main", "k-1", "agent", "agent-7", PUBLIC, "ops")
    return log, grant


async def test_valid_signatures_verify(ledger):
    log, grant = ledger
    await append_one(log, grant, signed("s"))
    await append_one(log, grant, AppendRequest.create("u", [NewEvent.create("x", {})]))
    report = await verify_chain(log, "main")
    assert report.ok, report.breaks
    required = await verify_chain(log, "main", signatures="require")
    assert [(b.sequence, b.kind) for b in required.breaks] == [(4, "unsigned")]


async def test_a_forged_signature_is_caught_even_with_every_hash_recomputed(ledger):
    log, grant = ledger
    await append_one(log, grant, signed("s"))
    events = await log.read_all("main")
    forged = rechain([*events[:-1], replace(events[-1], payload=b'{"n":1000}')])
    report = verify_events(forged, "main")
    assert [(b.sequence, b.kind) for b in report.breaks] == [(3, "bad_signature")]
    assert "does not verify" in report.breaks[0].message
    assert verify_events(forged, "main", signatures="ignore").ok


async def test_a_signature_claimed_for_another_agent_is_caught(ledger):
    log, grant = ledger
    await append_one(log, grant, signed("s"))
    events = await log.read_all("main")
    moved = rechain([*events[:-1], replace(events[-1], agent_id="agent-8")])
    (problem,) = verify_events(moved, "main").breaks
    assert problem.kind == "bad_signature" and "belongs to agent-7" in problem.message


async def test_signatures_by_a_key_revoked_earlier_are_caught(ledger):
    log, grant = ledger
    await append_one(log, grant, signed("s"))
    await log.revoke_key("main", "k-1", "ops", "rotated")
    events = await log.read_all("main")
    # Move the signed event after the revocation, as a rewrite of history would.
    signed_event, revocation = events[2], events[3]
    moved = rechain([*events[:2], replace(revocation, sequence=3),
                     replace(signed_event, sequence=4)])
    kinds = {(b.sequence, b.kind) for b in verify_events(moved, "main").breaks}
    assert (4, "bad_signature") in kinds


async def test_incremental_verification_learns_earlier_keys(ledger):
    log, grant = ledger
    for _ in range(3):
        await append_one(log, grant, signed(f"s-{_}"))
    events = await log.read_all("main")
    anchor = Head("main", 3, events[2].hash)
    report = await verify_chain(log, "main", after=anchor)
    assert report.ok, report.breaks
    assert report.events_checked == len(events) - 3
    from_export = verify_events(events, "main", after=anchor)
    assert from_export.ok and from_export.events_checked == len(events) - 3, from_export.breaks
    assert not verify_events(events, "main", after=anchor, signatures="ignore").breaks
    without_keys = verify_events(events[3:], "main", after=anchor)
    assert {b.kind for b in without_keys.breaks} == {"bad_signature"}


async def test_the_client_refuses_a_bad_signature_before_queueing():
    async with open_in_memory() as client:
        log = client._event_log
        await log.add_key("main", "k-1", "agent", "agent-7", PUBLIC, "ops")
        request = signed("s")
        event = request.events[0]
        with pytest.raises(InvalidEvent, match="does not verify"):
            await client.append("s", [replace(event, payload=b'{"n":2}')], agent_id="agent-7")
        result = await client.append("s", [event], agent_id="agent-7")
        assert result.events[0].signature == event.signature
