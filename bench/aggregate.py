"""From runs to figures: the median of each measure, and ratios taken within each run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.workloads import ALL_SYSTEMS, WORKLOADS

VERIFICATION_TITLES = {
    "verify-db": "verification from the database",
    "verify-db-1": "verification from the database, one process",
    "verify-read-db": "reading the same rows, no verification (COPY binary, one process)",
    "verify-export": "verification from an export file",
    "verify-export-1": "verification from an export file, one process",
}
#: The many-ledgers workload (bench/many_ledgers.py): ledgers, callers per ledger.
LEDGERS, CALLERS = 4, 256
LEDGER_TITLES = {
    "ledgers-1": f"1 ledger, its own writer process, {CALLERS} callers",
    f"ledgers-{LEDGERS}": f"{LEDGERS} ledgers in one server, a writer process each, "
                          f"{CALLERS} callers each (aggregate)",
}
TITLES = {w.key: w.title for w in WORKLOADS} | VERIFICATION_TITLES | LEDGER_TITLES
WORKLOAD_ORDER = [w.key for w in WORKLOADS] + list(VERIFICATION_TITLES) + list(LEDGER_TITLES)


@dataclass(frozen=True, slots=True)
class Row:
    """One measurement: run number, workload, system, and what the child reported."""

    run: int
    workload: str
    system: str
    label: str
    measurement: dict[str, Any]
    plan: dict[str, Any]
    memory: dict[str, Any] | None = field(default=None)


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return round(statistics.median(present), 3)


def _ratios(rows: list[Row], all_rows: list[Row], peer: str) -> list[float]:
    """This system's events/s over the peer's in the same workload and the same run."""
    ratios = []
    for row in rows:
        for other in all_rows:
            if (other.system == peer and other.workload == row.workload
                    and other.run == row.run and other.measurement["events_per_s"] > 0):
                ratios.append(row.measurement["events_per_s"] / other.measurement["events_per_s"])
    return ratios


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """One entry per (workload, system), in workload then system order."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.workload, row.system), []).append(row)

    def order(key: tuple[str, str]) -> tuple[int, int]:
        workload, system = key
        return WORKLOAD_ORDER.index(workload), ALL_SYSTEMS.index(system)

    results = []
    for key in sorted(groups, key=order):
        group = groups[key]
        workload, system = key
        fields = group[0].measurement.keys()
        median = {f: _median([r.measurement[f] for r in group]) for f in fields}
        entry: dict[str, Any] = {
            "workload": workload,
            "title": TITLES[workload],
            "system": system,
            "label": group[0].label,
            "plan": group[0].plan,
            "median": median,
            "ratio_to_raw": _median(_ratios(group, rows, "raw")),
            "ratio_to_eventsourcing": _median(_ratios(group, rows, "eventsourcing")),
            "runs": [r.measurement for r in group],
        }
        if group[0].memory is not None:
            entry["memory"] = [r.memory for r in group]
        results.append(entry)
    return results


def find(results: list[dict[str, Any]], workload: str, system: str) -> dict[str, Any] | None:
    for entry in results:
        if entry["workload"] == workload and entry["system"] == system:
            return entry
    return None
