"""What benchmarks/rules.py measured, as plain-text tables and the target verdicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench_support import table
from rules_support import CpuShare

PARTS = ("rollup", "load_windows", "evaluate", "record")
PHASES = ("load", "rollup 30d", "tick direct", "tick dagster", "backfill direct",
          "backfill dagster")  # fmt: skip


@dataclass
class Result:
    size: int
    load: dict = field(default_factory=dict)
    rollup: dict = field(default_factory=dict)
    tick: dict = field(default_factory=dict)  # median seconds per part, "total", "first" run
    tick_dagster: float | None = None
    backfill: dict = field(default_factory=dict)
    severities: dict = field(default_factory=dict)  # anomalies opened by the direct backfill
    backfill_dagster: float | None = None
    dagster_opened: int | None = None
    cpu: dict[str, CpuShare] = field(default_factory=dict)


def fmt(value: float | None, scale: float = 1, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def parts(values: dict, scale: float, digits: int) -> str:
    return "/".join(fmt(values.get(p), scale, digits) for p in PARTS) if values else "-"


def report(results: list[Result], storage: str) -> None:
    print(f"\nRESULTS (tick: median; backfill: 8,640 partitions in one run; Dagster: {storage})\n")
    table([["size", "load s", "rollup 30d s", "tick direct ms", "tick dagster ms",
            "backfill direct s", "backfill dagster s"]] + [
        [f"{r.size:,}", fmt(r.load.get("load_s")), fmt(r.rollup.get("s"), digits=2),
         fmt(r.tick.get("total"), 1000), fmt(r.tick_dagster, 1000),
         fmt(r.backfill.get("total"), digits=2), fmt(r.backfill_dagster, digits=2)]
        for r in results])  # fmt: skip
    print("Rows and split (load: copy/index/vacuum s; tick ms and backfill s:"
          " rollup/load_windows/evaluate/record)\n")  # fmt: skip
    table([["size", "events", "GB", "load parts s", "window rows", "currency windows",
            "tick parts ms", "backfill parts s"]] + [
        [f"{r.size:,}", f"{r.load.get('rows', 0):,}", fmt(r.load.get("table_gb"), digits=2),
         "/".join(fmt(r.load.get(k)) for k in ("copy_s", "index_s", "vacuum_s")),
         f"{r.rollup.get('windows', 0):,}", f"{r.rollup.get('currency_windows', 0):,}",
         parts(r.tick if "total" in r.tick else {}, 1000, 1), parts(r.backfill, 1, 2)]
        for r in results])  # fmt: skip
    print("Anomalies opened by the 30-day backfill of normal traffic\n")
    table([["size", "opened direct", "opened dagster", "by severity", "by rule",
            "tick's first run"]] + [
        [f"{r.size:,}", str(sum(r.backfill.get("opened", {}).values())) if r.backfill else "-",
         "-" if r.dagster_opened is None else str(r.dagster_opened),
         " ".join(f"{k}={v}" for k, v in r.severities.items()) or "-",
         " ".join(f"{k}={v}" for k, v in r.backfill.get("opened", {}).items()) or "-",
         " ".join(f"{k}={v}" for k, v in r.tick.get("first", {}).get("outcomes", {}).items())
         or "nothing found"]
        for r in results])  # fmt: skip
    phases = [p for p in PHASES if any(p in r.cpu for r in results)]
    print(
        "CPU during each phase, % of one core (2 cores = 200):"
        " this process / backends of the scratch databases / other postgres processes /"
        " everything else (others' tests; also processes too short-lived to sample)\n"
    )
    table([["size", *phases]] + [[f"{r.size:,}", *(str(r.cpu.get(p, "-")) for p in phases)]
                                 for r in results])  # fmt: skip
    verdicts(results)


def verdicts(results: list[Result]) -> None:
    by = {r.size: r for r in results}
    small, big, mid = by.get(100_000), by.get(10_000_000), by.get(1_000_000)
    ticks: list[tuple[str, Callable[[Result], float | None]]] = [
        ("direct", lambda r: r.tick.get("total")),
        ("dagster", lambda r: r.tick_dagster),
    ]
    for label, get in ticks:
        at_big, at_small = (get(big) if big else None), (get(small) if small else None)
        if at_big is None or at_small is None:
            print(f"VERDICT tick {label}: not measured at both 100k and 10M")
            continue
        ratio = at_big / at_small
        fast, flat = at_big < 1, ratio <= 1.5
        print(f"VERDICT tick {label} at 10M: {at_big * 1000:.0f} ms (< 1000 ms:"
              f" {'yes' if fast else 'NO'}), {ratio:.2f}x the 100k tick (<= 1.5x:"
              f" {'yes' if flat else 'NO'}) -> {'PASS' if fast and flat else 'FAIL'}")  # fmt: skip
    for label, value in (("direct", mid.backfill.get("total") if mid else None),
                         ("dagster", mid.backfill_dagster if mid else None)):  # fmt: skip
        if value is None:
            print(f"VERDICT 30-day backfill {label} over 1M: not measured")
        else:
            print(f"VERDICT 30-day backfill {label} over 1M: {value:.1f} s (< 120 s:"
                  f" {'PASS' if value < 120 else 'FAIL'})")  # fmt: skip
