"""The in-memory adapter and PostgreSQL, given the same ceremony script, record the same
events byte for byte and refuse with the same errors and messages."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from canonlog.application.ports import EventLog, append_one
from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import CanonlogError
from canonlog.domain.events import AppendRequest, NewEvent
from canonlog.domain.governance import GovernancePolicy, PolicyWitness
from canonlog.infrastructure.postgres.psycopg_log import PsycopgEventLog
from tests.conftest import TestDatabase
from tests.integration.test_memory_matches_postgres import stable
from tests.support.chains import assert_chain_verifies, run_side_by_side
from tests.support.roles import by_role

#: Fixed signatures: the stores do not check them (the application does), so the same
#: bytes go into both ledgers and their payloads can be compared byte for byte.
SIGNATURE = bytes(range(64))
PUBLIC = {"w-1": bytes([1]) * 32, "w-2": bytes([2]) * 32, "w-3": bytes([3]) * 32,
          "w-1b": bytes([4]) * 32}
OWNER = {"w-1": "alice", "w-2": "bob", "w-3": "carol", "w-1b": "alice"}


def policy(*key_ids: str, threshold: int = 2, wait: int = 0) -> GovernancePolicy:
    return GovernancePolicy(tuple(PolicyWitness(k, OWNER[k], PUBLIC[k]) for k in key_ids),
                            threshold, threshold, threshold, wait)


async def attempt(step: Any) -> object:
    try:
        result = await step
    except CanonlogError as exc:
        return (type(exc).__name__, str(exc))
    return result


def ceremonies_summary(found: list[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in dataclasses.asdict(c).items()
             if k not in ("proposed_at", "head_hash", "halt_hash")} for c in found]


async def run_script(log: EventLog) -> list[object]:
    results: list[object] = []
    grant = await log.acquire_grant("main", "writer-a")
    results.append(await attempt(log.propose_failover("main", "writer-b", "ops")))
    results.append(await attempt(log.establish_policy("main", dataclasses.replace(
        policy("w-1", "w-2"), failover_threshold=3), "admin")))
    results.append(await attempt(log.establish_policy("main", dataclasses.replace(
        policy("w-1"), witnesses=policy("w-1").witnesses * 2), "admin")))
    results.append(await attempt(log.establish_policy("main", dataclasses.replace(
        policy("w-1", "w-2"), proposers=()), "admin")))
    results.append(await attempt(log.establish_policy("", policy("w-1"), "admin")))
    results.append(await log.establish_policy("main", policy("w-1", "w-2", "w-3", "w-1b"),
                                              "admin \"quoted\" é"))
    results.append(await attempt(log.establish_policy("main", policy("w-1"), "admin")))
    await log.add_key("main", "agent-1", "agent", "agent-7", bytes([9]) * 32, "ops")
    results.append(await attempt(log.add_key("main", "w-9", "witness", "x", bytes(32), "ops")))
    await append_one(log, grant, AppendRequest.create("s", [NewEvent.create("x", {"n": 1})]))
    results.append(await attempt(log.propose_failover("main", "writer-a", "ops")))
    results.append(await attempt(log.propose_failover("main", "", "ops")))
    results.append(await attempt(log.propose_failover("nowhere", "writer-b", "ops")))
    first = await log.propose_failover("main", "writer-b", "ops \"quoted\" é")
    second = await log.propose_failover("main", "writer-c", "ops")
    results += [first, second]
    for key_id in ("agent-1", "w-missing", "w-2", "w-2"):
        results.append(await attempt(log.approve("main", first, key_id, SIGNATURE, "ops")))
    results.append(await attempt(log.approve("main", 99, "w-3", SIGNATURE, "ops")))
    results.append(await attempt(log.approve("main", first, "w-3", b"x" * 63, "ops")))
    results.append(await attempt(log.execute_failover("main", first, "ops")))
    # The policy ceremony: drop w-3, whose approvals then stop counting.
    results.append(await attempt(log.approve("main", second, "w-3", SIGNATURE, "ops")))
    change = await log.propose_policy("main", policy("w-1", "w-2", "w-1b"), "ops")
    rival = await log.propose_policy("main", policy("w-1", "w-2"), "ops")
    results.append(await attempt(log.execute_policy_change("main", change, "ops")))
    results.append(await attempt(log.execute_failover("main", change, "ops")))
    for key_id in ("w-1", "w-3"):
        results.append(await attempt(log.approve("main", change, key_id, SIGNATURE, "ops")))
    results.append(await attempt(log.execute_policy_change("main", change, "ops")))
    results.append(await attempt(log.approve("main", rival, "w-1", SIGNATURE, "ops")))
    results.append(await attempt(log.execute_policy_change("main", rival, "ops")))
    results.append(await attempt(log.approve("main", second, "w-3", SIGNATURE, "ops")))
    results.append(await attempt(log.execute_failover("main", second, "ops")))
    results.append(await attempt(log.approve("main", first, "w-1", SIGNATURE, "ops")))
    results.append(await attempt(log.execute_failover("main", first, "ops")))
    results.append(await attempt(log.execute_failover("main", first, "ops")))
    results.append(await attempt(log.approve("main", second, "w-1", SIGNATURE, "ops")))
    results.append(await attempt(append_one(log, grant, AppendRequest.create(
        "s", [NewEvent.create("x", {"n": 2})]))))
    results.append(await attempt(log.propose_resume("main", "ops")))
    await log.halt("main", "drill", "ops")
    resume = await log.propose_resume("main", "ops")
    results.append((resume, await log.propose_resume("main", "ops")))
    results.append(await attempt(log.execute_failover("main", resume, "ops")))
    results.append(await attempt(log.resume_ceremony("main", resume, "ops")))
    for key_id in ("w-2", "w-1b"):
        await log.approve("main", resume, key_id, SIGNATURE, "ops")
    results.append(await attempt(log.resume_ceremony("main", resume, "ops")))
    results.append(await attempt(log.resume_ceremony("main", resume, "ops")))
    # A second ledger whose policy waits: refused until the wait is over.
    await log.establish_policy("slow", policy("w-1", threshold=1, wait=10**9), "admin")
    await log.acquire_grant("slow", "writer-a")
    await log.halt("slow", "drill", "ops")
    slow = await log.propose_resume("slow", "ops")
    await log.approve("slow", slow, "w-1", SIGNATURE, "ops")
    results.append(await attempt(log.resume_ceremony("slow", slow, "ops")))
    results.append(ceremonies_summary(await log.ceremonies("main")))
    results.append(ceremonies_summary(await log.ceremonies("main", second)))
    results.append(await log.ceremonies("nowhere"))
    results.append(await log.policies("main"))
    return results


def masked(event: Any) -> dict[str, Any]:
    """stable(event) with the chain hashes a payload quotes masked: they cover the clock."""
    fields = stable(event)
    text = event.payload.decode()
    for name in ("head_hash", "halt_hash", "previous_head_hash"):
        text = re.sub(f'"{name}":"[0-9a-f]{{64}}"', f'"{name}":"<hash>"', text)
    fields["payload"] = text
    return fields


def without_remaining_time(results: list[object]) -> list[object]:
    """The waiting period's remaining time depends on the clock; the rest must match."""
    return [(r[0], r[1].rsplit(", and ", 1)[0]) if isinstance(r, tuple) and len(r) == 2
            and r[0] == "WaitingPeriodNotOver" else r for r in results]


async def test_memory_and_postgres_run_ceremonies_alike(database: TestDatabase) -> None:
    memory, postgres = await run_side_by_side(database, run_script)
    assert without_remaining_time(memory.results) == without_remaining_time(postgres.results)
    assert any(isinstance(r, tuple) and r[0] == "WaitingPeriodNotOver" for r in memory.results)
    assert len(memory.events) == len(postgres.events) > 15
    for mine, theirs in zip(memory.events, postgres.events, strict=True):
        assert masked(mine) == masked(theirs), f"event {theirs.sequence} differs"
    assert_chain_verifies(memory.events)
    assert_chain_verifies(postgres.events)


async def test_ceremony_payloads_are_canonical_json(database: TestDatabase) -> None:
    """What PostgreSQL writes for ceremony events is the canonical JSON of the payload."""
    postgres = await by_role(PsycopgEventLog, database)
    try:
        await run_script(postgres)
        for event in await postgres.read_stream("main", "$ledger"):
            assert event.payload == canonical_json(json.loads(event.payload))
    finally:
        await postgres.close()
