"""One door, kept by the code's structure: only the gateway writes governed streams.

Walks the syntax tree of every module of the package. The canonical writer's append
is called in two places only: the gateway, and the ledger client, whose stream
guard refuses the gateway's streams when CANONLOG_GATEWAY_ONE_DOOR is set. And no
module but the gateway's own names the gateway's streams or builds its events, so
nothing else can write a ticket, an approval or a commit record.
"""

from __future__ import annotations

import ast
from pathlib import Path

import canonlog

PACKAGE = Path(canonlog.__file__).parent
#: Modules that call a writer's append: the gateway, and the guarded ledger client.
WRITER_CALLERS = {"application/gateway.py", "application/client.py"}
#: The gateway's own modules: its rules, its events, its use cases and its auditor's read.
GATEWAY_MODULES = {"domain/gateway.py", "domain/tickets.py", "application/gateway.py",
                   "application/gateway_audit.py"}
GATEWAY_NAMES = {"TICKET_STREAM_PREFIX", "POLICY_STREAM", "ticket_stream", "REQUESTED",
                 "STAGED", "APPROVED", "REJECTED", "EXPIRED", "DENIED", "COMMITTED",
                 "POLICY_LOADED"}


def modules() -> list[tuple[str, ast.Module]]:
    return [(path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path)))
            for path in sorted(PACKAGE.rglob("*.py"))]


def writer_appends(tree: ast.Module) -> list[int]:
    """Lines calling append on something named like a writer (writer, _writer, x.writer)."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "append_batch")):
            continue
        target = node.func.value
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if "writer" in name.lower():
            lines.append(node.lineno)
    return lines


def gateway_references(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (
                "canonlog.domain.gateway", "canonlog.domain.tickets"):
            found += [a.name for a in node.names if a.name in GATEWAY_NAMES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value.startswith(("gateway.", "gateway-ticket/"))
                or node.value == "gateway-policy"):
            found.append(node.value)
    return found


def test_only_the_gateway_and_the_guarded_client_call_the_writer():
    callers = {name: lines for name, tree in modules() if (lines := writer_appends(tree))}
    assert set(callers) <= WRITER_CALLERS, callers
    assert "application/gateway.py" in callers  # the walk finds what it looks for


def test_no_module_but_the_gateway_names_its_streams_or_events():
    offenders = {name: refs for name, tree in modules()
                 if name not in GATEWAY_MODULES and (refs := gateway_references(tree))}
    assert offenders == {}
    assert gateway_references(ast.parse("from canonlog.domain.tickets import APPROVED"))


def test_the_walk_catches_a_module_that_calls_the_writer_itself():
    tree = ast.parse("async def f(client, r):\n    await client.writer.append(r)\n")
    assert writer_appends(tree) == [2]
