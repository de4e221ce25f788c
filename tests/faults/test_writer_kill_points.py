"""The writer process killed at named points of an append; the retry by execution id
tells what happened: the original event (replayed) if it committed, one new one if not."""

from __future__ import annotations

import pytest

from tests.acceptance.processes import WriterProcess
from tests.acceptance.test_writer_processes import assert_chain_verifies, config, ledger_rows

KILLED_AT = 20


@pytest.mark.parametrize("point", ["before_append", "before_commit", "after_commit"])
async def test_a_writer_killed_at_a_named_point_is_resolved_by_retrying_the_execution_id(
        database, tmp_path, point):
    doomed = WriterProcess.start(**config(database, tmp_path, count=40),
                                 env={"CANONLOG_TEST_KILL_AT": f"{point}:{KILLED_AT}"})
    try:
        doomed.process.wait(timeout=60)
    finally:
        doomed.kill()
    assert doomed.process.returncode == -9, doomed.stderr()
    acknowledged = doomed.acked()
    assert sorted(acknowledged) == list(range(KILLED_AT))

    before = {r["execution_id"]: r["seq"] for r in await ledger_rows(database)
              if r["event_type"] == "tick"}
    committed = point == "after_commit"
    assert (f"exec-{KILLED_AT}" in before) is committed

    retry = WriterProcess.start(**config(database, tmp_path, count=KILLED_AT + 5))
    try:
        retry.wait_for("DONE", timeout=60)
    finally:
        retry.kill()
    outcomes = {int(line.fields[0]): (int(line.fields[1]), line.fields[4] == "1")
                for line in retry.of("ACK")}
    for n, sequence in acknowledged.items():
        assert outcomes[n] == (sequence, True), f"exec-{n}"
    sequence, replayed = outcomes[KILLED_AT]
    assert replayed is committed
    if committed:
        assert sequence == before[f"exec-{KILLED_AT}"]

    rows = await ledger_rows(database)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    ticks = [r["execution_id"] for r in rows if r["event_type"] == "tick"]
    assert sorted(ticks) == sorted(f"exec-{n}" for n in range(KILLED_AT + 5))
    await assert_chain_verifies(database)
