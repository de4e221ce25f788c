"""The writer's last known head on disk: one file per ledger, inside its directory."""

from __future__ import annotations

from canonlog.domain.events import Head
from canonlog.infrastructure.head_store import FileHeadStore


def test_a_saved_head_is_loaded_and_replaced_by_a_later_one(tmp_path) -> None:
    store = FileHeadStore(tmp_path / "writer")
    assert store.load("main") is None
    store.save(Head("main", 3, bytes([3]) * 32))
    store.save(Head("main", 7, bytes([7]) * 32))
    assert store.load("main") == Head("main", 7, bytes([7]) * 32)
    assert [p.name for p in (tmp_path / "writer").iterdir()] == ["main.head.json"]


def test_ledger_names_stay_inside_the_directory_and_bad_files_are_ignored(tmp_path) -> None:
    store = FileHeadStore(tmp_path / "writer")
    for ledger in ("../evil", ".hidden", "a/b"):
        store.save(Head(ledger, 1, bytes(32)))
        assert store.load(ledger) == Head(ledger, 1, bytes(32))
    assert {p.parent for p in (tmp_path / "writer").iterdir()} == {tmp_path / "writer"}
    (tmp_path / "writer" / "main.head.json").write_text("{broken")
    assert store.load("main") is None
