"""What the coverage scan costs: health, /metrics and every coverage_sensor tick run it.

    uv run python benchmarks/coverage.py --sizes 100000,1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Per size, a scratch database gets the rules benchmark's history (30 days before 2026-11-01,
benchmarks/rules_history.py), rolled up and marked evaluated in one pass. Coverage then runs
from the history's first window to now, so the month since the history ends is uncovered, as
after a month of downtime. It times sentinelops.coverage.SCAN (median of 5) in these states:

* downtime: the history covered, the month after it never rolled up (a generate_series of
  ~8,640 windows anti-joined with the rollups);
* steady: every window up to the last closed one covered, the scan cursor current;
* late 1k: then 1,000 events stored late into random windows of the history;
* cursor 0: the scan cursor at the beginning, so every event of the history is looked at: the
  cost while a freshly imported history waits for its catch-up run (events stored before
  migration 0005 have no transaction id and are never scanned).

Not a test: nothing is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

import bench_support as bench
import psycopg
import rules_history as history
from rules_support import scratch_database

from sentinelops import coverage
from sentinelops_pipelines.storage import metrics as metrics_sql

FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
MARK_ALL = "UPDATE window_metrics SET evaluated_snapshot = rolled_snapshot"
LATE = """
INSERT INTO stripe_events (id, type, created, livemode, payload)
SELECT 'evt_late_' || n, 'charge.dispute.created',
       %(start)s + random() * interval '29 days', false, '{}'::jsonb
  FROM generate_series(1, %(n)s) AS n
"""


def timed_scan(url: str) -> tuple[float, int]:
    """Median milliseconds of five scans (read-only, as health runs it), and the stale count."""
    times, stale = [], 0
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(5):
            t0 = time.perf_counter()
            state = coverage.scan(conn, datetime.now(UTC), FLOOR)
            times.append((time.perf_counter() - t0) * 1000)
            stale = len(state.stale_windows)
    return statistics.median(times), stale


def measure(url: str, events: int) -> list[list[str]]:
    loaded = history.load(url, events)
    rows = []
    with psycopg.connect(url) as conn:
        metrics_sql.roll_up(conn, history.START, history.END)
        conn.execute(MARK_ALL)
        coverage.scan(conn, datetime.now(UTC), FLOOR, advance=True)
    ms, stale = timed_scan(url)
    rows.append([f"{events:,}", "downtime", f"{stale:,}", f"{ms:.1f}"])
    now = coverage.window_floor(datetime.now(UTC))
    with psycopg.connect(url) as conn:
        metrics_sql.roll_up(conn, history.END, now)
        conn.execute(MARK_ALL)
        coverage.scan(conn, datetime.now(UTC), FLOOR, advance=True)
    ms, stale = timed_scan(url)
    rows.append([f"{events:,}", "steady", f"{stale:,}", f"{ms:.1f}"])
    with psycopg.connect(url) as conn:
        conn.execute(LATE, {"start": history.START, "n": 1000})
    ms, stale = timed_scan(url)
    rows.append([f"{events:,}", "late 1k", f"{stale:,}", f"{ms:.1f}"])
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE coverage_state SET scanned_xid = '0'")
    ms, stale = timed_scan(url)
    rows.append([f"{events:,}", "cursor 0", f"{stale:,}", f"{ms:.1f}"])
    print(f"  loaded {loaded['rows']:,} events in {loaded['load_s']:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated event counts")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    args = parser.parse_args()
    rows = [["events", "state", "stale windows", "scan ms"]]
    with bench.database_server(args.database_url) as server:
        for size in (int(s) for s in args.sizes.split(",")):
            with scratch_database(server) as url:
                rows += measure(url, size)
    bench.table(rows)


if __name__ == "__main__":
    main()
