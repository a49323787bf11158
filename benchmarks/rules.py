"""Scale benchmark of the rule engine: 5-minute ticks and 30-day backfills over large histories.

    uv run python benchmarks/rules.py --sizes 100000
    uv run python benchmarks/rules.py --sizes 100000,1000000,10000000 --explain \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
    uv run python benchmarks/rules.py --sizes 100000,1000000 --dagster-storage postgres \
        --dagster-planned-subset --database-url postgresql://postgres@127.0.0.1:5432/postgres

Per size, a scratch `sentinelops_bench_rules` database (migrated, dropped at the end; on
--database-url's server, else DATABASE_URL's, else the project's embedded one) gets a history of
that many events over the 30 days before 2026-11-01 00:00 UTC (benchmarks/rules_history.py):
COPY into the migrated table with its three secondary indexes dropped and rebuilt from their
own definitions afterwards, then VACUUM ANALYZE. Then it times:

* rollup 30d: `roll_up` of the whole history once;
* tick: the last window (23:55), the 30 days before it rolled up. direct = roll_up +
  load_windows + evaluate + record on one open connection (median of 5 after one warm-up);
  dagster = the window_metrics and anomalies assets for that partition by `dg.materialize`
  (median of 3 after one warm-up);
* backfill: the 8,640 partitions of the 30 days in one run from empty rollups and no anomalies,
  direct and (for --dagster-backfill-sizes) through `dg.materialize` with the range tags, with
  DAGSTER_EVENT_BATCH_SIZE=500 as the project sets it.

Dagster runs on an ephemeral instance, or with --dagster-storage postgres on the project's own
storage class (SentinelOpsDagsterStorage, in `sentinelops_bench_rules_dagster`); with
--dagster-planned-subset it logs one planned event per asset instead of one per partition.
--explain prints EXPLAIN (ANALYZE, BUFFERS) of metrics.py's statements at the largest size.
It prints tables, the target verdicts and where the CPU went in each phase (% of one core;
the machine has 2 cores and others' test suites run on it). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time
from collections import Counter
from datetime import datetime, timedelta

import bench_support as bench
import dagster as dg
import psycopg
import rules_history as history
from rules_report import PARTS, Result, report
from rules_support import SCRATCH_DB, dagster_instance, explain, phase, scratch_database

from sentinelops.settings import get_settings
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.instance import EVENT_BATCH_SIZE
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import metrics as metrics_sql

TICK = history.END - timedelta(minutes=5)
KEY = "%Y-%m-%d-%H:%M"
DIRECT_RUNS, DAGSTER_RUNS = 5, 3
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RESET = "TRUNCATE window_metrics, window_amounts, anomalies CASCADE"  # scratch data only
SEVERITIES = "SELECT severity, count(*) FROM anomalies GROUP BY 1 ORDER BY 1"


def direct(conn: psycopg.Connection, start: datetime, end: datetime) -> dict:
    """What the two assets do, without Dagster; each asset's transaction committed."""
    book = load_rules()
    enabled, gap = book.enabled(), timedelta(minutes=book.quiet_gap_minutes)
    notify_from = get_settings().alert_min_severity
    t0 = time.perf_counter()
    written = metrics_sql.roll_up(conn, start, end)
    conn.commit()
    t1 = time.perf_counter()
    windows = metrics_sql.load_windows(conn, start, end)
    t2 = time.perf_counter()
    evaluating, outcomes, opened = 0.0, Counter[str](), Counter[str]()
    for w in windows:
        for name, definition in enabled.items():
            started = time.perf_counter()
            findings = evaluate(name, definition, w)
            evaluating += time.perf_counter() - started
            for finding in findings:
                outcome = anomaly_sql.record(conn, finding, gap, notify_from)
                outcomes[outcome] += 1
                opened[name] += outcome == "opened"
    conn.commit()
    t3 = time.perf_counter()
    spent = (t1 - t0, t2 - t1, evaluating, t3 - t2 - evaluating)
    return {**dict(zip(PARTS, spent, strict=True)), "total": t3 - t0, "written": written,
            "outcomes": dict(outcomes), "opened": dict(+opened)}  # fmt: skip


def materialize(url: str, instance: dg.DagsterInstance, **how: object) -> float:
    """One in-process run of the two rule assets; its wall time in seconds."""
    started = time.perf_counter()
    result = dg.materialize(
        [stripe_events, window_metrics, anomalies],
        resources={
            "postgres": PostgresResource(database_url=url),
            "rules": RulesResource(),
            "slack": SlackResource(),
        },
        selection=[window_metrics, anomalies],
        instance=instance,
        run_config=QUIET,
        **how,  # type: ignore[arg-type]
    )
    if not result.success:
        raise RuntimeError("the Dagster run failed")
    return time.perf_counter() - started


def reset(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(RESET)


def measure(url: str, r: Result, args: argparse.Namespace) -> None:
    """Fills `r` phase by phase, so a timeout still leaves what was measured."""
    in_phase = lambda name: phase(SCRATCH_DB, r.cpu, name)  # noqa: E731
    print(f"\n== {r.size:,} events: loading", flush=True)
    with in_phase("load"):
        r.load = history.load(url, r.size)
    print(f"   {r.load['rows']:,} rows, {r.load['table_gb']:.2f} GB in {r.load['load_s']:.0f} s;"
          " rollup 30d", flush=True)  # fmt: skip
    end = TICK + timedelta(minutes=5)
    with psycopg.connect(url) as conn:
        with in_phase("rollup 30d"):
            started = time.perf_counter()
            r.rollup = metrics_sql.roll_up(conn, history.START, history.END)
            conn.commit()
            r.rollup["s"] = time.perf_counter() - started
        print(f"   {r.rollup['s']:.1f} s; ticks", flush=True)
        r.tick["first"] = direct(conn, TICK, end)  # warm-up: opens what the window breaches
        with in_phase("tick direct"):
            runs = [direct(conn, TICK, end) for _ in range(DIRECT_RUNS)]
        r.tick |= {p: statistics.median(run[p] for run in runs) for p in (*PARTS, "total")}
    with dagster_instance(url, args.dagster_storage) as instance:
        materialize(url, instance, partition_key=TICK.strftime(KEY))  # warm-up
        with in_phase("tick dagster"):
            runs = [materialize(url, instance, partition_key=TICK.strftime(KEY))
                    for _ in range(DAGSTER_RUNS)]  # fmt: skip
        r.tick_dagster = statistics.median(runs)
    print("   backfill direct", flush=True)
    reset(url)
    with psycopg.connect(url) as conn:
        with in_phase("backfill direct"):
            r.backfill = direct(conn, history.START, history.END)
        r.severities = dict(conn.execute(SEVERITIES).fetchall())
    if args.explain and r.size == max(args.sizes):
        explain(url, TICK, end, ["WINDOWS", "AMOUNTS"])
        explain(url, history.START, history.END, ["ROLL_UP_METRICS", "ROLL_UP_AMOUNTS"])
    if r.size not in args.dagster_backfill_sizes:
        return
    print("   backfill dagster", flush=True)
    reset(url)
    tags = {"dagster/asset_partition_range_start": history.START.strftime(KEY),
            "dagster/asset_partition_range_end": TICK.strftime(KEY)}  # fmt: skip
    with dagster_instance(url, args.dagster_storage) as instance, in_phase("backfill dagster"):
        r.backfill_dagster = materialize(url, instance, tags=tags)
    with psycopg.connect(url) as conn:
        r.dagster_opened = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]  # type: ignore[index]


def int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if any(v < 1000 or v > 20_000_000 for v in values):
        raise argparse.ArgumentTypeError("sizes between 1000 and 20,000,000")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--sizes", type=int_list, default=[100_000], help="events per history, e.g. 100000,1000000")
    add("--dagster-backfill-sizes", type=int_list, default=[100_000, 1_000_000])
    add("--dagster-storage", choices=["ephemeral", "postgres"], default="ephemeral")
    add(
        "--dagster-planned-subset",
        action="store_true",
        help="set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one planned event per asset",
    )
    add("--explain", action="store_true", help="EXPLAIN metrics.py's SQL at the largest size")
    add("--database-url", default=os.environ.get("DATABASE_URL") or None, help="server to use")
    add("--max-minutes", type=float, default=45, help="stop and report after this (default 45)")
    args = parser.parse_args()
    # As sentinelops_pipelines.instance does for the real instance: a range run logs one
    # materialization per partition.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
    if args.dagster_planned_subset:
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"

    def out_of_time(*_: object) -> None:
        raise TimeoutError(f"--max-minutes {args.max_minutes:g} reached")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.max_minutes * 60))
    results: list[Result] = []
    started = time.perf_counter()
    try:
        with bench.database_server(args.database_url) as server, scratch_database(server) as url:
            for size in args.sizes:
                results.append(Result(size))
                measure(url, results[-1], args)
    except TimeoutError as exc:
        print(f"\nSTOPPED: {exc}; reporting what was measured")
    finally:
        signal.alarm(0)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    subset = " + planned-event subsets" if args.dagster_planned_subset else ""
    report(results, args.dagster_storage + subset)


if __name__ == "__main__":
    main()
