"""Schema migrations and the schema integrity check.

Migrations are the files ``sql/NNNN_name.sql``, shipped as the data package
``canonlog.sql``. They apply in order, each in its own transaction together
with its record, under a session advisory lock so that two runners never
interleave; an applied migration whose file has since changed is an error,
unless the file's earlier text is listed in SUPERSEDED_CHECKSUMS. Servers older
than PostgreSQL 14 are refused.

The integrity check compares what is installed with what is shipped: every
trigger defined in the migrations is present on its table and enabled ALWAYS,
every function body is byte-identical to the newest shipped definition (one of
them, where a migration defines a function per server version), and the
catalogue (privileges, owners, function settings and security modes, the whole
set of triggers, role memberships; see catalogue.py) is the migrations' own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources

import asyncpg
import structlog

from canonlog.domain.errors import MigrationError
from canonlog.infrastructure.postgres.catalogue import catalogue_problems, expected_catalogue
from canonlog.infrastructure.postgres.queries import QUERIES

log = structlog.get_logger(__name__)

#: Session advisory lock key (classid, objid) that serialises migration runners.
_MIGRATION_LOCK = (1668050791, 1)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTION = re.compile(
    r"CREATE (?:OR REPLACE )?FUNCTION canonlog\.(\w+)\(.*?\bAS \$body\$(.*?)\$body\$",
    re.DOTALL,
)
_DROPPED_FUNCTION = re.compile(r"^DROP FUNCTION canonlog\.(\w+)\(", re.MULTILINE)
_TRIGGER = re.compile(
    r"CREATE (?:OR REPLACE )?TRIGGER (\w+) BEFORE [A-Z ]+ ON canonlog\.(\w+)\s+"
    r"FOR EACH (?:ROW|STATEMENT) EXECUTE FUNCTION canonlog\.(\w+)\(\)"
)


#: The oldest PostgreSQL major version canonlog runs on (server_version_num / 10000).
MINIMUM_SERVER_VERSION = 14

#: Earlier texts of shipped migrations that databases may have applied, by version.
#: A migration is edited in place only when every server that could apply the
#: earlier text gets exactly the same objects from the new one; the earlier
#: checksum is then listed here so that those databases keep working.
SUPERSEDED_CHECKSUMS: dict[int, frozenset[str]] = {
    # 0002 defined is_json_object_v1 with IS JSON, which PostgreSQL 14 and 15 cannot
    # parse; it now creates that same definition on 16 and later, another on 14 and 15.
    2: frozenset({"15841fc60d3ea00f54a08287a540c010ef036ee6e52e43e97c508512c8eb6128"}),
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@cache
def shipped_migrations() -> tuple[Migration, ...]:
    """Returns the migrations shipped with this package, in version order."""
    found = []
    for entry in resources.files("canonlog.sql").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Numbers are reserved per change, so a release may skip one; never repeat one.
    if len(set(versions)) != len(versions) or (versions and versions[0] != 1):
        raise MigrationError(f"shipped migrations must be numbered from 1, each once: {versions}")
    return tuple(found)


async def applied_migrations(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
) -> list[AppliedMigration]:
    """Returns the migrations recorded in the database (none for a new database)."""
    if not await conn.fetchval(QUERIES["migrations_schema_exists"]):
        return []
    rows = await conn.fetch(QUERIES["migrations_applied"])
    return [AppliedMigration(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows]


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Applies pending migrations and returns them; safe to run any number of times.

    Needs a role that may create roles and SET ROLE canonlog_owner (a superuser
    in practice). Raises MigrationError when an applied migration differs from the
    shipped file or the database has migrations this package does not know.
    """
    shipped = shipped_migrations()
    await server_version(conn)
    await conn.execute("SELECT pg_advisory_lock($1, $2)", *_MIGRATION_LOCK)
    try:
        try:
            await conn.execute(QUERIES["migrations_bootstrap"])
            applied = {m.version: m for m in await applied_migrations(conn)}
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"cannot migrate as login {conn.get_settings().session_authorization}: {exc}; "
                "migrations need a login that may create roles and SET ROLE canonlog_owner "
                "(a superuser in practice): set CANONLOG_ADMIN_DSN to one"
            ) from exc
        _check_history(shipped, applied)
        done = []
        for migration in shipped:
            if migration.version in applied:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    # A migration may SET LOCAL ROLE canonlog_owner; the record is the runner's.
                    await conn.execute("RESET ROLE")
                    await conn.execute(
                        QUERIES["migrations_record"],
                        migration.version, migration.name, migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            log.info("migration applied", version=migration.version, name=migration.name)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", *_MIGRATION_LOCK)


def _check_history(shipped: tuple[Migration, ...], applied: dict[int, AppliedMigration]) -> None:
    by_version = {m.version: m for m in shipped}
    newest = max(applied, default=0)
    skipped = [m for m in shipped if m.version < newest and m.version not in applied]
    if skipped:
        raise MigrationError(
            f"migration {skipped[0].version:04d}_{skipped[0].name} is older than migration "
            f"{newest:04d}, which the database has, so it cannot be applied in order"
        )
    for version, record in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{record.name}, "
                "which this version of canonlog does not ship; upgrade canonlog"
            )
        accepted = {migration.checksum} | SUPERSEDED_CHECKSUMS.get(version, frozenset())
        if record.checksum not in accepted:
            raise MigrationError(
                f"migration {version:04d}_{record.name} was applied with checksum "
                f"{record.checksum[:12]}, but the shipped file has {migration.checksum[:12]}"
            )


async def server_version(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> str:
    """Returns the server's version ("15.18"); raises MigrationError below MINIMUM_SERVER_VERSION."""
    row = await conn.fetchrow(QUERIES["server_version"])
    assert row is not None
    require_supported(int(row["number"]), str(row["version"]))
    return str(row["version"])


def require_supported(version_num: int, version: str) -> None:
    """Raises MigrationError naming the server's version when canonlog does not support it."""
    if version_num < MINIMUM_SERVER_VERSION * 10000:
        raise MigrationError(
            f"PostgreSQL {version} is not supported: canonlog needs PostgreSQL "
            f"{MINIMUM_SERVER_VERSION} or newer"
        )


@dataclass(frozen=True, slots=True)
class SchemaReport:
    """Whether the installed integrity machinery is exactly the shipped one, on which server."""

    problems: tuple[str, ...]
    triggers_checked: int = 0
    functions_checked: int = 0
    facts_checked: int = 0
    pending_migrations: tuple[int, ...] = field(default=())
    server_version: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@cache
def shipped_functions() -> dict[str, frozenset[str]]:
    """Returns function name -> body texts of the newest migration defining it, for
    every function the migrations create and do not drop later.

    A migration that defines a function differently per server version (in a DO
    block) ships several bodies; the installed one must be one of them.
    """
    bodies: dict[str, frozenset[str]] = {}
    for migration in shipped_migrations():
        found: dict[str, frozenset[str]] = {}
        statements = [*_FUNCTION.finditer(migration.sql), *_DROPPED_FUNCTION.finditer(migration.sql)]
        for match in sorted(statements, key=lambda m: m.start()):
            if match.re is _FUNCTION:
                found[match[1]] = found.get(match[1], frozenset()) | {match[2]}
            else:
                found.pop(match[1], None)
                bodies.pop(match[1], None)
        bodies.update(found)
    return bodies


@cache
def shipped_triggers() -> dict[tuple[str, str], str]:
    """Returns (table, trigger) -> function name for every shipped trigger."""
    triggers: dict[tuple[str, str], str] = {}
    for migration in shipped_migrations():
        for match in _TRIGGER.finditer(migration.sql):
            triggers[(match[2], match[1])] = match[3]
    return triggers


async def check_schema(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> SchemaReport:
    """Reports every way the installed schema differs from the shipped one.

    Raises MigrationError when the server is older than canonlog supports.
    """
    version = await server_version(conn)
    applied = {m.version for m in await applied_migrations(conn)}
    pending = tuple(m.version for m in shipped_migrations() if m.version not in applied)
    problems: list[str] = [f"migration {v:04d} is not applied" for v in pending]

    installed_triggers = {
        (r["table_name"], r["trigger_name"]): (r["function_name"], r["enabled"])
        for r in await conn.fetch(QUERIES["installed_triggers"])
    }
    for (table, trigger), function in sorted(shipped_triggers().items()):
        found = installed_triggers.get((table, trigger))
        if found is None:
            problems.append(f"trigger {trigger} on canonlog.{table} is missing")
            continue
        installed_function, enabled = found
        if installed_function != function:
            problems.append(
                f"trigger {trigger} on canonlog.{table} calls {installed_function}, not {function}"
            )
        if enabled != "A":
            state = {"O": "enabled only for origin sessions", "D": "disabled",
                     "R": "enabled only for replicas"}.get(enabled, enabled)
            problems.append(f"trigger {trigger} on canonlog.{table} is {state}, not ALWAYS")

    installed_functions = {
        r["name"]: r for r in await conn.fetch(QUERIES["installed_functions"])
    }
    for name, bodies in sorted(shipped_functions().items()):
        row = installed_functions.get(name)
        if row is None:
            problems.append(f"function canonlog.{name} is missing")
        elif row["source"] not in bodies:
            problems.append(f"function canonlog.{name} differs from the shipped definition")
        elif row["owner"] != "canonlog_owner":
            problems.append(f"function canonlog.{name} is owned by {row['owner']}")

    for row in await conn.fetch(QUERIES["table_owners"]):
        if row["table_name"] != "schema_migrations" and row["owner"] != "canonlog_owner":
            problems.append(f"canonlog.{row['table_name']} is owned by {row['owner']}")

    if not pending:
        problems += await catalogue_problems(conn)
    return SchemaReport(
        problems=tuple(problems),
        triggers_checked=len(shipped_triggers()),
        functions_checked=len(shipped_functions()),
        facts_checked=0 if pending else len(expected_catalogue()),
        pending_migrations=pending,
        server_version=version,
    )
