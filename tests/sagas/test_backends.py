"""Each backend applies an idempotency key at most once, deletes idempotently, and
says whether a failure is worth retrying."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from canonlog.domain.canonical import canonical_json
from canonlog.domain.errors import BackendRejected, BackendUnavailable
from canonlog.domain.saga import SagaStep
from canonlog.infrastructure.sagas.files import FileBackend
from canonlog.infrastructure.sagas.kv import KeyValueBackend
from canonlog.infrastructure.sagas.postgres import RelationalBackend, connect_pool
from tests.sagas.conftest import SagaWorld


def step(backend: str, operation: str, payload: dict[str, Any], key: str = "k-1") -> SagaStep:
    return SagaStep("s", backend, operation, canonical_json(payload), None, key)


async def _count(world: SagaWorld, sql: str) -> int:
    return int(await world.user_pool.fetchval(sql))


CASES = {
    "relational": (step("relational", "insert", {"table": "documents",
                                                 "values": {"slug": "a", "title": "A"}}),
                   "SELECT count(*) FROM documents"),
    "graph": (step("graph", "add_node", {"node_id": "n1", "label": "doc"}),
              "SELECT count(*) FROM canonlog_graph_nodes"),
    "vector": (step("vector", "upsert_chunks", {"document_id": "d", "chunks": [
        {"content": "x", "embedding": [1, 2]}, {"content": "y", "embedding": [3, 4]}]}),
        "SELECT count(*) FROM canonlog_vector_chunks"),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_postgres_backends_apply_a_key_once_and_delete_idempotently(world: SagaWorld, name):
    if name == "vector" and not world.vector:
        pytest.skip("this PostgreSQL server has no pgvector (docs/reference/sagas.md)")
    the_step, count = CASES[name]
    backend = world.backends[name]
    first, second = await backend.apply(the_step), await backend.apply(the_step)
    assert (first.applied, second.applied) == (True, False)
    rows = await _count(world, count)
    assert rows >= 1
    await backend.remove(the_step)
    await backend.remove(the_step)
    assert await _count(world, count) == 0


async def test_a_graph_edge_is_keyed_and_goes_with_its_node(world: SagaWorld):
    graph = world.backends["graph"]
    for key, node in (("k-a", "a"), ("k-b", "b")):
        await graph.apply(step("graph", "add_node", {"node_id": node, "label": "doc"}, key))
    edge = step("graph", "add_edge", {"source": "a", "label": "links", "target": "b"}, "k-e")
    assert (await graph.apply(edge)).applied and not (await graph.apply(edge)).applied
    await graph.remove(step("graph", "add_node", {"node_id": "a", "label": "doc"}, "k-a"))
    assert await _count(world, "SELECT count(*) FROM canonlog_graph_edges") == 0


async def test_a_conflicting_row_is_refused_for_good(world: SagaWorld):
    relational = world.backends["relational"]
    values = {"table": "documents", "values": {"slug": "same", "title": "A"}}
    await relational.apply(step("relational", "insert", values, "k-1"))
    with pytest.raises(BackendRejected, match="23505"):
        await relational.apply(step("relational", "insert", values, "k-2"))
    with pytest.raises(BackendRejected, match="identifier"):
        await relational.apply(step("relational", "insert", {"table": "documents; drop",
                                                             "values": {}}))


async def test_a_key_is_set_once_per_step_even_after_it_was_deleted(world: SagaWorld):
    kv = world.backends["kv"]
    the_step = step("kv", "set", {"key": f"{world.prefix}:x", "value": "1"}, f"{world.prefix}:1")
    assert (await kv.apply(the_step)).applied
    await world.redis.set(f"{world.prefix}:x", "changed")
    assert not (await kv.apply(the_step)).applied
    assert await world.redis.get(f"{world.prefix}:x") == b"changed"
    await kv.remove(the_step)
    await kv.remove(the_step)
    assert not (await kv.apply(the_step)).applied
    assert await world.redis.get(f"{world.prefix}:x") is None


async def test_a_file_is_written_once_inside_its_directory(tmp_path: Path):
    files = FileBackend(tmp_path)
    the_step = step("file", "write", {"path": "a/b.txt", "content": "hello"})
    assert (await files.apply(the_step)).applied
    (tmp_path / "a/b.txt").write_text("edited")
    assert not (await files.apply(the_step)).applied
    assert (tmp_path / "a/b.txt").read_text() == "edited"
    await files.remove(the_step)
    await files.remove(the_step)
    assert not (tmp_path / "a/b.txt").exists()
    for path in ("/etc/passwd", "../x", ".canonlog-saga/x"):
        with pytest.raises(BackendRejected, match="inside"):
            await files.apply(step("file", "write", {"path": path, "content": ""}))


async def test_unreachable_backends_are_unavailable_not_refused(valkey_server, tmp_path: Path):
    client = redis.Redis.from_url(f"redis://127.0.0.1:{valkey_server.port}/0",
                                  socket_timeout=1.0, socket_connect_timeout=1.0)
    valkey_server.stop()
    try:
        with pytest.raises(BackendUnavailable):
            await KeyValueBackend(client).apply(step("kv", "set", {"key": "x", "value": "1"}))
    finally:
        await client.aclose()
    with pytest.raises(BackendUnavailable):
        await connect_pool("postgresql://nobody@127.0.0.1:1/none")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(BackendUnavailable):
        await FileBackend(blocked).apply(step("file", "write", {"path": "x", "content": ""}))


async def test_relational_backend_reports_a_lost_database_as_unavailable(world: SagaWorld,
                                                                         user_db):
    pool = await connect_pool(user_db.uri())
    backend = RelationalBackend(pool)
    await pool.close()
    with pytest.raises(BackendUnavailable):
        await backend.apply(step("relational", "insert", {"table": "documents",
                                                          "values": {"slug": "z"}}))
