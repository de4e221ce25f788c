"""`canonlog db upgrade | db status`, `canonlog dev` and `canonlog demo`: the database itself."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from canonlog.infrastructure.bootstrap import admin_connection, prepare_database
from canonlog.infrastructure.cli.support import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_VERIFY_FAILED,
    add_command,
    add_group,
    print_json,
    render,
)
from canonlog.infrastructure.postgres.migrations import applied_migrations, check_schema
from canonlog.infrastructure.settings import Settings


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from canonlog.infrastructure.demo import run_demo

    caught = await run_demo(settings, print)
    return EXIT_OK if caught else EXIT_VERIFY_FAILED


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    connections = await prepare_database(settings.model_copy(update={"dsn": None}))
    assert connections.embedded is not None
    info = {"data_dir": str(connections.embedded.data_dir), "dsn": connections.dsn,
            "admin_dsn": connections.admin_dsn}
    if args.json:
        print_json(info)
    else:
        print(f"embedded PostgreSQL running in {info['data_dir']}")
        print(f"  runtime role: {info['dsn']}")
        print(f"  superuser:    {info['admin_dsn']}")
        print("press Ctrl-C to stop it", flush=True)
    await asyncio.Event().wait()
    return EXIT_OK


async def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings.model_copy(update={"migrate_on_start": True})) as conn:
        applied = await applied_migrations(conn)
    return render(args, {"applied": [m.version for m in applied]},
                  f"schema up to date: {len(applied)} migration(s) applied")


async def cmd_db_status(settings: Settings, args: argparse.Namespace) -> int:
    async with admin_connection(settings.model_copy(update={"migrate_on_start": False})) as conn:
        applied = await applied_migrations(conn)
        report = await check_schema(conn)
    if args.json:
        migrations: list[dict[str, Any]] = [
            {"version": m.version, "name": m.name, "checksum": m.checksum,
             "applied_at": m.applied_at} for m in applied]
        print_json({"server_version": report.server_version, "applied": migrations,
                    "integrity_ok": report.ok, "problems": list(report.problems)})
    else:
        print(f"PostgreSQL {report.server_version}")
        for m in applied:
            print(f"  {m.version:04d}_{m.name}  {m.checksum[:12]}  {m.applied_at:%Y-%m-%d %H:%M}")
        print(f"integrity: {'ok' if report.ok else 'PROBLEMS'} ({report.triggers_checked} "
              f"triggers, {report.functions_checked} functions, {report.facts_checked} "
              "catalogue facts checked)")
        for problem in report.problems:
            print(f"  - {problem}")
    return EXIT_OK if report.ok else EXIT_REFUSED


def register(sub: Any) -> None:
    """Adds demo, dev and db to the `canonlog` parser."""
    add_command(sub, "demo", cmd_demo, "append, read, verify, tamper as a superuser, catch it")
    add_command(sub, "dev", cmd_dev,
                "run the embedded PostgreSQL until Ctrl-C, printing its connection strings")
    group = add_group(sub, "db", "schema migrations and integrity")
    add_command(group, "upgrade", cmd_db_upgrade, "apply pending migrations")
    add_command(group, "status", cmd_db_status,
                "applied migrations and the schema integrity report")
