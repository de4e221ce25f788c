"""Verification of the database in parallel processes: the report one pass gives, from
genesis or mid-chain, over an untouched ledger and over one a superuser edited; a
process that dies fails the verification; the command takes a number of processes."""

from __future__ import annotations

import signal

import pytest

from canonlog.application.chain_verification import verify_chain
from canonlog.application.verification import verify_ledger
from canonlog.domain.errors import InvalidEvent, VerificationIncomplete
from canonlog.domain.events import GENESIS_HASH, Head
from canonlog.infrastructure.parallel_verification import ParallelChainChecker, run_ranges
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog
from tests.support.cli import Cli
from tests.support.ledgers import append_events, as_superuser

EDITS = {
    "untouched": (),
    "edited payload": ("UPDATE canonlog.events SET payload = convert_to('{\"amount\":9}', 'UTF8')"
                       " WHERE seq = 17",),
    "deleted events": ("DELETE FROM canonlog.events WHERE seq IN (12, 30)",),
    "rewritten stream": ("UPDATE canonlog.events SET stream_version = stream_version + 100"
                         " WHERE seq = 21",),
}


@pytest.fixture
async def app_log(database):
    await append_events(database.app.uri(), 40)  # sequences 1..42
    log = await AsyncpgEventLog.connect(database.app.uri())
    yield log
    await log.close()


@pytest.mark.parametrize("edit", sorted(EDITS))
async def test_ranges_in_processes_report_what_one_pass_reports(database, app_log, edit):
    if EDITS[edit]:
        await as_superuser(database.admin.uri(), *EDITS[edit])
    checker = ParallelChainChecker(database.app.uri(), 2, range_events=5)
    for after in (Head("main", 0, GENESIS_HASH), await _stored(app_log, 8)):
        expected = await verify_chain(app_log, "main", after=after)
        progress: list[int] = []
        found = await checker.verify_chain(app_log, "main", after=after, until=None,
                                           signatures="check", progress=progress.append)
        assert found == expected
        assert progress[-1] == expected.events_checked
    assert expected.ok == (edit == "untouched")


async def test_verify_ledger_with_the_checker_matches_one_pass_to_a_sequence(database, app_log):
    checker = ParallelChainChecker(database.app.uri(), 2, range_events=4)
    one_pass = await verify_ledger(app_log, "main", until=30)
    parallel = await verify_ledger(app_log, "main", until=30, checker=checker)
    assert parallel.chain == one_pass.chain and parallel.chain.last_sequence == 30
    assert parallel.ok


async def _stored(log: AsyncpgEventLog, sequence: int) -> Head:
    (event,) = await log.read_all("main", after=sequence - 1, limit=1)
    return Head("main", sequence, event.hash)


def test_a_process_that_dies_fails_the_verification():
    with pytest.raises(VerificationIncomplete, match="died"):
        run_ranges(signal.raise_signal, [signal.SIGKILL, signal.SIGKILL], 2)


def test_a_process_that_fails_fails_the_verification_and_canonlog_errors_pass_as_they_are():
    with pytest.raises(VerificationIncomplete, match="range 2 could not be checked"):
        run_ranges(int, ["1", "not a number"], 2)
    with pytest.raises(InvalidEvent, match="first"):
        run_ranges(_refuse, ["first", "second"], 2)


def _refuse(message: str) -> None:
    raise InvalidEvent(message)


async def test_the_command_verifies_in_the_processes_it_is_given(database, app_log, tmp_path):
    cli = Cli(database.app.uri(), database.admin.uri(),
              {"CANONLOG_DATA_DIR": str(tmp_path / "data")})
    done = await cli.ok("verify", "--processes", "2", "--no-checkpoints")
    assert "ledger main: 42 events verified" in done.stdout
    assert "verifying (2 processes)" in done.stderr
    refused = await cli("verify", "--processes", "0")
    assert refused.code == 2 and "--processes must be 1 or more" in refused.stderr
    await as_superuser(database.admin.uri(), "DELETE FROM canonlog.events WHERE seq = 20")
    broken = await cli("verify", "--no-checkpoints",
                       env={"CANONLOG_VERIFY_PROCESSES": "2"})
    assert broken.code == 1
    assert "chain broken at sequence 20: sequence 20 is missing" in broken.stdout
