"""One measurement of a system against a fresh database: what the side-by-side
benchmarks (bench.gateway, bench.http_appends) share."""

from __future__ import annotations

from pathlib import Path

from bench.measure import Measurement, Stopwatch
from bench.peers import AsyncSystem, Target
from bench.server import APP_ROLE, Cluster, create_database, drop_database
from bench.workloads import Plan, drive_async


async def measure_fresh(cluster: Cluster, template: str, database: str, system: AsyncSystem,
                        name: str, callers: int, count: int, work: Path, unit: str
                        ) -> Measurement:
    """Runs `count` single-event calls from `callers` closed-loop callers of system on a
    fresh copy of template, checks that every call was stored, and drops the copy.

    One caller warms up with a twentieth of its calls, more callers with one each.
    """
    await create_database(cluster, database, template)
    app = cluster.admin.on(database).as_user(APP_ROLE, cluster.app_password)
    target = Target(cluster.admin.on(database).uri(), app.uri(), work / database,
                    cluster.postmaster_pid)
    calls = max(1, count // callers)
    plan = Plan(name, callers, 1, calls, callers, 1 if callers > 1 else max(1, calls // 20), name)
    await system.open(target, callers)
    try:
        result = await drive_async(system, plan, Stopwatch(cluster.postmaster_pid))
        stored = await system.stored()
    finally:
        await system.close()
        await drop_database(cluster, database)
    if stored != plan.events + callers * plan.warmup_calls:
        raise SystemExit(f"{name} stored {stored} {unit}, not {plan.events}")
    return result
