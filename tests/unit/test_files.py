"""File names from ledger and key names, and writes that never leave half a file."""

from __future__ import annotations

import stat

import pytest

from canonlog.infrastructure.files import file_name, write_file


@pytest.mark.parametrize(("name", "escaped"), [
    ("main", "main"),
    ("orders-2025_v1.b", "orders-2025_v1.b"),
    ("../etc", "%2e.%2fetc"),
    (".hidden", "%2ehidden"),
    ("witness.example/w1", "witness.example%2fw1"),
    ("Zoë", "Zo%c3%ab"),
    ("a b%", "a%20b%25"),
])
def test_a_name_becomes_one_safe_file_name_component(name, escaped):
    assert file_name(name) == escaped


def test_names_that_differ_get_file_names_that_differ():
    names = ["a/b", "a%2fb", "a.b", "a_b", ".a", "%2ea"]
    assert len({file_name(n) for n in names}) == len(names)


def test_a_new_file_is_never_overwritten(tmp_path):
    path = tmp_path / "note"
    write_file(path, b"first\n", mode=0o444)
    with pytest.raises(FileExistsError):
        write_file(path, b"second\n", mode=0o444)
    assert path.read_bytes() == b"first\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_a_private_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "key.pem"
    write_file(path, b"secret", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replacing_swaps_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    write_file(path, b"{}", replace=True)
    write_file(path, b'{"a": 1}', replace=True, durable=False)
    assert path.read_bytes() == b'{"a": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_write_into_a_missing_directory_fails_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_file(tmp_path / "missing" / "note", b"x")
    assert list(tmp_path.iterdir()) == []
