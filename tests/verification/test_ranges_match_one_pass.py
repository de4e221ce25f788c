"""Ranges checked alone, in parallel processes, and joined give the report one pass
gives: the same first break, the same breaks and counts, the same head, over an
export cut into ranges of every size and a ledger with keys, signatures, a policy,
a ceremony and a revocation, whatever was done to it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from canonlog.application import ceremonies
from canonlog.application.chain_verification import verify_events
from canonlog.application.ports import append_one
from canonlog.domain.events import AppendRequest, NewEvent, RecordedEvent, WriteContext
from canonlog.domain.signing import sign_event
from canonlog.infrastructure.export import event_to_json
from canonlog.infrastructure.memory import MemoryEventLog
from canonlog.infrastructure.parallel_verification import verify_export_file
from tests.support.ceremony import policy_of
from tests.support.chains import rechain
from tests.support.keys import public_bytes, seeded_key

AGENT = seeded_key(7)
WITNESSES = [seeded_key(n) for n in (1, 2, 3)]
POLICY = policy_of(*((f"w-{n}", f"witness-{n}", key) for n, key in enumerate(WITNESSES)),
                   threshold=2)


def _signed(stream: str, n: int) -> AppendRequest:
    context = WriteContext(agent_id="agent-7")
    event = sign_event(NewEvent.create("approved", {"n": n}), private_key=AGENT,
                       signing_key_id="k-1", ledger_id="main", stream_id=stream, context=context)
    return AppendRequest.create(stream, [event], context=context)


async def rich_ledger() -> list[RecordedEvent]:
    """About 60 events: a policy, an agent key and its signed events in several streams, a
    witnessed failover, a revocation, and plain events around them."""
    log = MemoryEventLog()
    await log.establish_policy("main", POLICY, "admin")
    grant = await log.acquire_grant("main", "writer-a")
    await log.add_key("main", "k-1", "agent", "agent-7", public_bytes(AGENT), "ops")
    for n in range(20):
        await append_one(log, grant, _signed(f"order-{n % 4}", n))
        await append_one(log, grant, AppendRequest.create(
            f"cart-{n % 3}", [NewEvent.create("added", {"n": n})]))
    ceremony = await ceremonies.propose_failover(log, "main", "writer-b", "ops")
    for n, key in enumerate(WITNESSES[:2]):
        await ceremonies.approve(log, "main", ceremony.proposal_id, f"w-{n}", "ops",
                                 private_key=key)
    await ceremonies.execute_failover(log, "main", ceremony.proposal_id, "ops")
    grant = await log.acquire_grant("main", "writer-b")
    for n in range(20, 30):
        await append_one(log, grant, _signed(f"order-{n % 4}", n))
    await log.revoke_key("main", "k-1", "ops", "rotated")
    for n in range(30, 36):
        await append_one(log, grant, AppendRequest.create(
            f"cart-{n % 3}", [NewEvent.create("added", {"n": n})]))
    return await log.read_all("main")


def _payload(event: RecordedEvent, data: object) -> RecordedEvent:
    return replace(event, payload=json.dumps(data, separators=(",", ":")).encode())


def _forged_promotion(events: list[RecordedEvent]) -> list[RecordedEvent]:
    (at,) = [i for i, e in enumerate(events) if e.event_type == "canonlog.writer_promoted"]
    data = json.loads(events[at].payload)
    data["approvals"], data["threshold"] = data["approvals"][:1], 1
    return rechain([*events[:at], _payload(events[at], data), *events[at + 1:]])


def _witness_key_added(events: list[RecordedEvent]) -> list[RecordedEvent]:
    (first,) = [e for e in events if e.event_type == "canonlog.key_added"]
    forged = _payload(first, {"key_id": "w-mallory", "purpose": "witness", "owner_id": "mallory",
                              "public_key": "11" * 32, "actor": "root"})
    at = events.index(first)
    return rechain([*events[:at + 5], replace(forged, sequence=events[at + 5].sequence),
                    *(replace(e, sequence=e.sequence + 1) for e in events[at + 5:])])


MUTATIONS = {
    "untouched": lambda events: events,
    "edited payload": lambda events: [*events[:30], _payload(events[30], {"n": 999}),
                                      *events[31:]],
    "edited and rechained": lambda events: rechain(
        [*events[:13], _payload(events[13], {"n": 999}), *events[14:]]),
    "deleted event": lambda events: [*events[:20], *events[21:]],
    "deleted tail": lambda events: events[:-3],
    "swapped events": lambda events: [*events[:25], events[26], events[25], *events[27:]],
    "repeated event": lambda events: [*events[:18], events[17], *events[18:]],
    "stream version": lambda events: rechain(
        [*events[:40], replace(events[40], stream_version=events[40].stream_version + 1),
         *events[41:]]),
    "sequence zero first": lambda events: [replace(events[0], sequence=0), *events],
    "other ledger": lambda events: [*events[:9], replace(events[9], ledger_id="other"),
                                    *events[10:]],
    "forged promotion": _forged_promotion,
    "witness key outside a ceremony": _witness_key_added,
    "signature after revocation": lambda events: rechain(
        [*events[:-1], replace(events[-1], signing_key_id=events[5].signing_key_id,
                               signature=events[5].signature, agent_id="agent-7")]),
}


def _write(path: Path, events: list[RecordedEvent]) -> None:
    path.write_text("".join(event_to_json(e) + "\n" for e in events), "utf-8")


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
async def test_an_export_in_ranges_reports_what_one_pass_reports(tmp_path, mutation):
    events = MUTATIONS[mutation](await rich_ledger())
    path = tmp_path / "export.jsonl"
    _write(path, events)
    expected = verify_events(events, "main")
    watch = frozenset({10, 33})
    for processes, range_bytes in ((1, 1), (2, 900), (2, 5000), (2, 1 << 20)):
        found, hashes = verify_export_file(path, "main", processes=processes, watch=watch,
                                           range_bytes=range_bytes)
        assert found.first_break == expected.first_break, (processes, range_bytes)
        assert found.breaks == expected.breaks
        assert (found.events_checked, found.first_sequence, found.last_sequence,
                found.head_hash, found.breaks_total) == (
            expected.events_checked, expected.first_sequence, expected.last_sequence,
            expected.head_hash, expected.breaks_total)
        assert hashes == {e.sequence: e.hash for e in events if e.sequence in watch}
    assert expected.ok == (mutation in ("untouched", "deleted tail"))  # a cut tail: checkpoints


async def test_a_malformed_line_is_named_as_one_pass_names_it(tmp_path):
    from canonlog.domain.errors import ExportFormatError
    from canonlog.infrastructure.export import export_events

    events = await rich_ledger()
    path = tmp_path / "export.jsonl"
    lines = [event_to_json(e) for e in events]
    lines[14] = lines[14].replace('"epoch":1', '"epoch":"1"')
    lines[40] = "{not json"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ExportFormatError) as one_pass:
        verify_events(export_events(path)[1], "main")
    for range_bytes in (700, 1 << 20):
        with pytest.raises(ExportFormatError) as in_ranges:
            verify_export_file(path, "main", processes=2, range_bytes=range_bytes)
        assert str(in_ranges.value) == str(one_pass.value)
        assert str(in_ranges.value).startswith("line 15: field 'epoch'")
