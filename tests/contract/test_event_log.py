"""The EventLog contract: every adapter assigns, chains and refuses alike."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from canonlog.application.ports import AppendResult, EventLog, append_one
from canonlog.domain.errors import (
    CanonlogError,
    ConcurrencyConflict,
    GrantUnavailable,
    IdempotencyConflict,
    InvalidEvent,
    LedgerNotFound,
    StaleWriter,
    SystemHalted,
)
from canonlog.domain.events import (
    GENESIS_HASH,
    AppendRequest,
    NewEvent,
    StreamState,
    WriteContext,
    WriterGrant,
)
from canonlog.domain.hashing import event_hash_v1
from tests.support.ceremony import resume_by_ceremony
from tests.support.keys import public_bytes, seeded_key
from tests.support.ledgers import request


async def all_events(log: EventLog, ledger: str = "main"):
    return await log.read_all(ledger, after=0, limit=100_000)


async def test_first_grant_creates_the_ledger_with_a_chained_genesis_event(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    assert grant == WriterGrant("main", "writer-a", 1)
    (genesis,) = await all_events(event_log)
    assert genesis.sequence == 1
    assert genesis.stream_id == "$ledger"
    assert genesis.event_type == "canonlog.writer_granted"
    assert genesis.prev_hash == GENESIS_HASH
    assert genesis.hash == event_hash_v1(genesis)


async def test_appended_events_get_gap_free_sequences_versions_and_a_hash_chain(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    first = await append_one(event_log, grant, request("order-1", {"a": 1}, {"a": 2}))
    second = await append_one(event_log, grant, request("order-2", {"b": 1}))
    third = await append_one(event_log, grant, request("order-1", {"a": 3}))
    assert [e.sequence for e in first.events] == [2, 3]
    assert [e.stream_version for e in first.events] == [1, 2]
    assert second.events[0].sequence == 4 and second.events[0].stream_version == 1
    assert third.events[0].sequence == 5 and third.events[0].stream_version == 3
    stored = await all_events(event_log)
    assert [e.sequence for e in stored] == [1, 2, 3, 4, 5]
    for previous, event in itertools.pairwise(stored):
        assert event.prev_hash == previous.hash
    for event in stored:
        assert event.hash == event_hash_v1(event)
    # What append returned is exactly what is stored.
    assert list(first.events + second.events + third.events) == stored[1:]


async def test_write_context_and_event_ids_are_recorded_and_hashed(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    event_id = uuid.uuid4()
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    req = AppendRequest.create(
        "order-1",
        [NewEvent.create("placed", {"x": "é"}, {"trace": "t-1"}, event_id=event_id)],
        context=WriteContext(task_id="task-1", execution_id="exec-1", correlation_id="c-1",
                             causation_id="cause-1", agent_id="agent-1", writer_time=when),
    )
    (event,) = (await append_one(event_log, grant, req)).events
    (stored,) = await event_log.read_stream("main", "order-1")
    assert stored == event
    assert stored.event_id == event_id
    assert (stored.task_id, stored.execution_id, stored.correlation_id, stored.causation_id,
            stored.agent_id) == ("task-1", "exec-1", "c-1", "cause-1", "agent-1")
    assert stored.writer_time == when
    assert stored.metadata == b'{"trace":"t-1"}'
    assert stored.payload == '{"x":"é"}'.encode()
    assert stored.hash == event_hash_v1(stored)


async def test_expected_version_semantics(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s", expected=StreamState.NO_STREAM))
    with pytest.raises(ConcurrencyConflict) as conflict:
        await append_one(event_log, grant, request("s", expected=StreamState.NO_STREAM))
    assert conflict.value.actual == 1
    with pytest.raises(ConcurrencyConflict) as conflict:
        await append_one(event_log, grant, request("new", expected=StreamState.STREAM_EXISTS))
    assert conflict.value.actual == 0
    await append_one(event_log, grant, request("s", expected=StreamState.STREAM_EXISTS))
    await append_one(event_log, grant, request("s", expected=2))
    with pytest.raises(ConcurrencyConflict) as conflict:
        await append_one(event_log, grant, request("s", expected=2))
    assert conflict.value.actual == 3
    assert conflict.value.stream_id == "s"
    await append_one(event_log, grant, request("s", expected=StreamState.ANY))
    assert [e.stream_version for e in await event_log.read_stream("main", "s")] == [1, 2, 3, 4]


async def test_a_refused_append_leaves_no_row_and_no_sequence_gap(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s"))
    before = await event_log.head("main")
    with pytest.raises(ConcurrencyConflict):
        await append_one(event_log, grant, request("s", {"a": 1}, {"a": 2}, expected=5))
    assert await event_log.head("main") == before
    after = await append_one(event_log, grant, request("s"))
    assert after.events[0].sequence == before.sequence + 1


async def test_requests_in_a_batch_succeed_or_fail_alone(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("taken"))
    outcomes = await event_log.append_batch(grant, [
        request("a", expected=StreamState.NO_STREAM),
        request("taken", expected=StreamState.NO_STREAM),
        request("a", expected=1),
        request("a", expected=1),
        request("b", {"x": 1}, {"x": 2}),
    ])
    assert isinstance(outcomes[0], AppendResult)
    assert isinstance(outcomes[1], ConcurrencyConflict) and outcomes[1].actual == 1
    assert isinstance(outcomes[2], AppendResult)
    assert outcomes[2].events[0].stream_version == 2
    assert isinstance(outcomes[3], ConcurrencyConflict) and outcomes[3].actual == 2
    assert isinstance(outcomes[4], AppendResult)
    sequences = [e.sequence for o in outcomes if isinstance(o, AppendResult) for e in o.events]
    assert sequences == [3, 4, 5, 6]
    stored = await all_events(event_log)
    assert [e.sequence for e in stored] == [1, 2, 3, 4, 5, 6]


async def test_same_execution_id_and_request_replays_the_original(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    original = await append_one(event_log, grant, request("s", {"a": 1}, {"a": 2}, execution_id="x-1"))
    head = await event_log.head("main")
    retry = await append_one(event_log, grant, request("s", {"a": 1}, {"a": 2}, execution_id="x-1",
                                                  expected=StreamState.NO_STREAM))
    assert retry.replayed and not original.replayed
    assert [e.sequence for e in retry.events] == [e.sequence for e in original.events]
    assert [e.hash for e in retry.events] == [e.hash for e in original.events]
    assert retry.events == original.events
    assert await event_log.head("main") == head


async def test_same_execution_id_with_a_different_request_is_refused(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s", {"a": 1}, execution_id="x-1"))
    head = await event_log.head("main")
    for changed in (request("s", {"a": 2}, execution_id="x-1"),
                    request("other", {"a": 1}, execution_id="x-1"),
                    request("s", {"a": 1}, execution_id="x-1", task_id="t")):
        with pytest.raises(IdempotencyConflict):
            await append_one(event_log, grant, changed)
    assert await event_log.head("main") == head


async def test_duplicate_execution_ids_within_one_batch_produce_one_write(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    outcomes = await event_log.append_batch(grant, [
        request("s", {"a": 1}, execution_id="x-1"),
        request("s", {"a": 1}, execution_id="x-1"),
        request("s", {"a": 9}, execution_id="x-1"),
    ])
    assert isinstance(outcomes[0], AppendResult) and not outcomes[0].replayed
    assert isinstance(outcomes[1], AppendResult) and outcomes[1].replayed
    assert outcomes[1].events == outcomes[0].events
    assert isinstance(outcomes[2], IdempotencyConflict)
    assert len(await event_log.read_stream("main", "s")) == 1


async def test_an_idempotent_replay_ignores_a_conflict_in_the_same_batch(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    outcomes = await event_log.append_batch(grant, [
        request("s", expected=StreamState.NO_STREAM, execution_id="x-1"),
        request("s", expected=StreamState.NO_STREAM, execution_id="x-2"),
    ])
    assert isinstance(outcomes[0], AppendResult)
    assert isinstance(outcomes[1], ConcurrencyConflict)
    # A refused request leaves no idempotency record: the id is free for a new request.
    result = await append_one(event_log, grant, request("t", execution_id="x-2"))
    assert not result.replayed


async def test_a_stale_epoch_or_another_writer_id_is_refused(event_log):
    old = await event_log.acquire_grant("main", "writer-a")
    new = await event_log.acquire_grant("main", "writer-a")
    assert new.epoch == old.epoch + 1
    head = await event_log.head("main")
    with pytest.raises(StaleWriter):
        await append_one(event_log, old, request("s"))
    with pytest.raises(StaleWriter):
        await append_one(event_log, WriterGrant("main", "writer-b", new.epoch), request("s"))
    assert await event_log.head("main") == head
    await append_one(event_log, new, request("s"))


async def test_another_writer_gets_the_grant_only_after_a_clean_release(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    with pytest.raises(GrantUnavailable):
        await event_log.acquire_grant("main", "writer-b")
    await event_log.release_grant(grant)
    with pytest.raises(StaleWriter):
        await append_one(event_log, grant, request("s"))
    taken = await event_log.acquire_grant("main", "writer-b")
    assert taken == WriterGrant("main", "writer-b", grant.epoch + 1)
    types = [e.event_type for e in await event_log.read_stream("main", "$ledger")]
    assert types == ["canonlog.writer_granted", "canonlog.writer_released",
                     "canonlog.writer_granted"]


async def test_a_halted_ledger_refuses_writes_until_resumed(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s"))
    assert await event_log.halt("main", "suspected tampering", "ops") is True
    assert await event_log.halt("main", "again", "ops") is False
    head = await event_log.head("main")
    with pytest.raises(SystemHalted) as halted:
        await append_one(event_log, grant, request("s"))
    assert "suspected tampering" in str(halted.value)
    with pytest.raises(SystemHalted):
        await event_log.acquire_grant("main", "writer-a")
    assert await event_log.head("main") == head
    state = await event_log.ledger_state("main")
    assert state.halted and state.halt_reason == "suspected tampering"
    assert not hasattr(event_log, "resume")  # a halt ends only through its ceremony
    resumed = await resume_by_ceremony(event_log)
    assert not (await event_log.ledger_state("main")).halted
    await append_one(event_log, grant, request("s"))
    ledger_events = await event_log.read_stream("main", "$ledger")
    assert [e.event_type for e in ledger_events] == [
        "canonlog.writer_granted", "canonlog.halted", "canonlog.policy_established",
        "canonlog.ceremony_proposed", "canonlog.ceremony_approved", "canonlog.resumed"]
    assert ledger_events[-1].sequence == resumed
    for event in await all_events(event_log):
        assert event.hash == event_hash_v1(event)


async def test_unknown_ledgers_are_reported_by_state_and_appends_and_read_as_empty(event_log):
    with pytest.raises(LedgerNotFound):
        await event_log.ledger_state("nowhere")
    with pytest.raises(LedgerNotFound):
        await append_one(event_log, WriterGrant("nowhere", "w", 1), request("s"))
    assert (await event_log.head("nowhere")).sequence == 0
    assert await event_log.read_all("nowhere") == []
    assert await event_log.read_stream("nowhere", "s") == []
    assert await event_log.list_keys("nowhere") == []
    assert await event_log.ceremonies("nowhere") == []


async def test_ledgers_are_independent_chains(event_log):
    a = await event_log.acquire_grant("alpha", "writer-a")
    b = await event_log.acquire_grant("beta", "writer-b")
    await append_one(event_log, a, request("s"))
    await append_one(event_log, b, request("s"))
    await append_one(event_log, a, request("s"))
    alpha = await all_events(event_log, "alpha")
    beta = await all_events(event_log, "beta")
    assert [e.sequence for e in alpha] == [1, 2, 3]
    assert [e.sequence for e in beta] == [1, 2]
    assert beta[0].prev_hash == GENESIS_HASH


async def test_read_all_pages_by_sequence(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    for i in range(7):
        await append_one(event_log, grant, request(f"s-{i % 3}", {"i": i}))
    pages, after = [], 0
    while page := await event_log.read_all("main", after=after, limit=3):
        pages.append([e.sequence for e in page])
        after = page[-1].sequence
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8]]
    head = await event_log.head("main")
    assert head.sequence == 8 and head.hash == (await all_events(event_log))[-1].hash


async def test_read_stream_from_a_version_with_a_limit(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s", *({"i": i} for i in range(5))))
    events = await event_log.read_stream("main", "s", from_version=2, limit=2)
    assert [e.stream_version for e in events] == [2, 3]
    assert await event_log.read_stream("main", "missing") == []


async def test_the_ledger_refuses_what_validation_would_have_caught(event_log):
    """Requests built without the validating constructors are refused by the log itself."""
    grant = await event_log.acquire_grant("main", "writer-a")
    head = await event_log.head("main")
    bad = [
        AppendRequest("$ledger", (NewEvent.create("x", {}),)),
        AppendRequest("", (NewEvent.create("x", {}),)),
        AppendRequest("s" * 300, (NewEvent.create("x", {}),)),
        AppendRequest("s", (NewEvent("", b"{}"),)),
    ]
    outcomes = await event_log.append_batch(grant, [*bad, request("fine")])
    assert all(isinstance(o, InvalidEvent) for o in outcomes[:-1]), outcomes
    assert isinstance(outcomes[-1], AppendResult)
    assert outcomes[-1].events[0].sequence == head.sequence + 1
    for payload in (b"[1]", b"not json", b"\xff\xfe", b'{"a":"\\u0000"}'):
        with pytest.raises(InvalidEvent):
            await append_one(event_log, grant, AppendRequest("s", (NewEvent("x", payload),)))
    assert (await event_log.head("main")).sequence == head.sequence + 1


async def test_a_recorded_event_id_cannot_be_used_again(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    event_id = uuid.uuid4()
    await append_one(event_log, grant, AppendRequest.create(
        "s", [NewEvent.create("x", {}, event_id=event_id)]))
    outcomes = await event_log.append_batch(grant, [
        AppendRequest.create("s", [NewEvent.create("x", {}, event_id=event_id)]),
        request("t"),
    ])
    assert isinstance(outcomes[0], InvalidEvent)
    assert isinstance(outcomes[1], AppendResult)


async def test_an_event_id_twice_in_one_request_refuses_that_request_alone(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    event = NewEvent.create("x", {}, event_id=uuid.uuid4())
    outcomes = await event_log.append_batch(grant, [AppendRequest("s", (event, event)),
                                                    request("t")])
    assert isinstance(outcomes[0], InvalidEvent)
    assert isinstance(outcomes[1], AppendResult) and outcomes[1].events[0].sequence == 2
    assert [e.stream_id for e in await all_events(event_log)] == ["$ledger", "t"]


async def test_errors_share_one_root(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    await append_one(event_log, grant, request("s"))
    with pytest.raises(CanonlogError):
        await append_one(event_log, grant, request("s", expected=StreamState.NO_STREAM))


async def test_authority_time_never_runs_backwards(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    for _ in range(5):
        await append_one(event_log, grant, request("s"))
    times = [e.recorded_at for e in await all_events(event_log)]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


def agent_key(seed: int):
    private = seeded_key(seed)
    return private, public_bytes(private)


def signed_request(private, key_id: str, agent: str, stream: str = "s",
                   ledger: str = "main") -> AppendRequest:
    from canonlog.domain.signing import sign_event

    context = WriteContext(agent_id=agent, task_id="t-1")
    event = sign_event(NewEvent.create("approved", {"amount": 5}), private_key=private,
                       signing_key_id=key_id, ledger_id=ledger, stream_id=stream,
                       context=context)
    return AppendRequest.create(stream, [event], context=context)


async def test_keys_are_registered_and_revoked_by_chained_events(event_log):
    await event_log.acquire_grant("main", "writer-a")
    _, public = agent_key(1)
    added = await event_log.add_key("main", "k-1", "agent", "agent-7", public, "ops")
    with pytest.raises(InvalidEvent, match="already registered"):
        await event_log.add_key("main", "k-1", "agent", "agent-7", public, "ops")
    with pytest.raises(InvalidEvent):
        await event_log.add_key("main", "k-2", "agent", "agent-7", b"short", "ops")
    revoked = await event_log.revoke_key("main", "k-1", "ops", "laptop stolen")
    with pytest.raises(InvalidEvent, match="not an active key"):
        await event_log.revoke_key("main", "k-1", "ops", "again")
    (key,) = await event_log.list_keys("main")
    assert (key.key_id, key.owner_id, key.public_key) == ("k-1", "agent-7", public)
    assert (key.added_seq, key.revoked_seq) == (added, revoked)
    types = [e.event_type for e in await event_log.read_stream("main", "$ledger")]
    assert types[-2:] == ["canonlog.key_added", "canonlog.key_revoked"]


async def test_a_signed_event_needs_an_active_key_of_its_agent(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    private, public = agent_key(1)
    await event_log.add_key("main", "k-1", "agent", "agent-7", public, "ops")
    result = await append_one(event_log, grant, signed_request(private, "k-1", "agent-7"))
    (event,) = result.events
    assert event.signing_key_id == "k-1" and len(event.signature) == 64
    assert event.hash == event_hash_v1(event)
    assert (await event_log.read_stream("main", "s"))[0] == event
    head = await event_log.head("main")
    refusals = await event_log.append_batch(grant, [
        signed_request(private, "k-1", "agent-8"),      # someone else's key
        signed_request(private, "nope", "agent-7"),     # unknown key
    ])
    assert all(isinstance(o, InvalidEvent) for o in refusals), refusals
    assert "not an active key of agent agent-8" in str(refusals[0])
    await event_log.revoke_key("main", "k-1", "ops", "rotated")
    with pytest.raises(InvalidEvent, match="not an active key"):
        await append_one(event_log, grant, signed_request(private, "k-1", "agent-7"))
    assert (await event_log.head("main")).sequence == head.sequence + 1


async def test_a_signature_without_its_key_id_is_refused(event_log):
    grant = await event_log.acquire_grant("main", "writer-a")
    req = AppendRequest("s", (NewEvent("x", b"{}", event_id=uuid.uuid4(), signature=bytes(64)),),
                        context=WriteContext(agent_id="a"))
    with pytest.raises(InvalidEvent, match="signing key id"):
        await append_one(event_log, grant, req)
