"""Who may do what in the canonlog schema, compared with what the migrations define.

The catalogue is a set of one-line facts read from PostgreSQL's system catalogs
(catalogue.sql): the owner of every canonlog object, every privilege granted on
it (tables, views, sequences, columns, functions, the schema), every function's
security mode and settings, every trigger with its definition and state, every
rule, and the attributes and memberships of the canonlog_* roles.

The expected catalogue is expected_catalogue.txt, the facts of a database freshly
migrated with the shipped migrations, kept beside them; a test rebuilds it from a
fresh migration and fails when the two differ. A snapshot rather than a scratch
migration at check time, because the writer checks with its own login, which may
create neither databases nor roles.

Separately (catalogue_roles.sql), no role that reads, writes or operates may be a
superuser, a member of canonlog_owner, or the owner of a canonlog object: the
runtime roles and every login that is a member of one of them.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import asyncpg

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

EXPECTED_FILE = "expected_catalogue.txt"


def _text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text("utf-8")


@cache
def expected_catalogue() -> frozenset[str]:
    """Returns the facts of a freshly migrated database, as shipped."""
    return frozenset(line for line in _text(EXPECTED_FILE).splitlines() if line)


async def installed_catalogue(conn: Connection) -> frozenset[str]:
    """Returns the facts of the database conn is connected to."""
    return frozenset(r["fact"] for r in await conn.fetch(_text("catalogue.sql")))


async def catalogue_problems(conn: Connection) -> list[str]:
    """Returns every fact that differs from the expected catalogue, and every role
    check that fails, each as a sentence naming the object and the difference."""
    installed = await installed_catalogue(conn)
    expected = expected_catalogue()
    problems = [f"expected but missing: {fact}" for fact in sorted(expected - installed)]
    problems += [f"not defined by the migrations: {fact}" for fact in sorted(installed - expected)]
    return problems + await _role_problems(conn, login_only=False)


async def login_problems(conn: Connection) -> list[str]:
    """Returns why the session's own login may not write: it is a superuser, a member
    of canonlog_owner, or owns a canonlog object."""
    return await _role_problems(conn, login_only=True)


async def _role_problems(conn: Connection, *, login_only: bool) -> list[str]:
    return [r["problem"] for r in await conn.fetch(_text("catalogue_roles.sql"), login_only)]
