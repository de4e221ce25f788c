"""The query catalogue: the named queries of queries.sql, shared by both drivers."""

from __future__ import annotations

from importlib import resources


def load_queries(package: str, filename: str) -> dict[str, str]:
    """Returns the queries of a .sql file shipped in package, by the name in their
    ``-- name: x`` header; each runs from its header to the next one."""
    text = resources.files(package).joinpath(filename).read_text("utf-8")
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- name:"):
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.removeprefix("-- name:").strip(), []
        elif name:
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES = load_queries(__package__, "queries.sql")
