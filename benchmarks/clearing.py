"""What clearing costs: every evaluation pass ends with clearing.clear_quiet.

    uv run python benchmarks/clearing.py
    uv run python benchmarks/clearing.py --incidents 10,1000,20000 --explain \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

A scratch database holds 30 days of 5-minute windows (2026-10-02 to 2026-11-01), every one
rolled up and evaluated, what four rules read in each (rule_readings), and --history anomalies
spread over the month that clearing must skip: resolved, or open and cleared long ago (a tenth
of them announced). Per --incidents size, that many open or acknowledged incidents end 0-20
minutes before LAST_END, half of them announced ('opened', sent), and a pass of
clear_quiet (30-minute quiet gap, as rules.toml) is timed on one connection after a warm-up
run, each run in a transaction rolled back:

* nothing to clear: `now` 5 minutes after LAST_END, so no incident's gap is closed yet (the
  steady state of a pass every 5 minutes; median of 5);
* last window stale: `now` at the end of the month, but the window starting at LAST_END (in
  every incident's gap) not evaluated, so each incident's gap is walked and none clears
  (median of 5);
* all clear: `now` at the end of the month; every incident clears and the announced half
  queue a 'cleared' notice (median of 3, the tables vacuumed between runs). clear_quiet is
  one statement (the UPDATE, each notice's last reading and its INSERT); a first version that
  read the reading and queued the notice row by row took 13.5 s at 20,000 incidents, 1.5 s now
  (with JIT off for the statement: compiling it cost ~0.9 s on every pass, nothing to clear or not).

--explain prints EXPLAIN (ANALYZE, BUFFERS) of clearing.CLEAR for the largest size, with
nothing to clear and with all clear. Not a test: nothing is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import bench_support as bench
import psycopg

from sentinelops_pipelines.storage import clearing

SCRATCH_DB = "sentinelops_bench_clearing"
STATEMENT_TIMEOUT_MS = 10 * 60 * 1000
START = datetime(2026, 10, 2, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
LAST_END = END - timedelta(hours=1)  # the latest incident's window_end
GAP = timedelta(minutes=30)
STEP = timedelta(minutes=5)
# (rule, measure, label) of the incidents' charts; rule_readings holds each for every window.
CHARTS = [
    ("payment_failure_spike", "failed_30m", "failed payments in 30 min"),
    ("refund_spike", "count_30m", "refunds in 30 min"),
    ("dispute_spike", "count_30m", "disputes in 30 min"),
    ("churn_spike", "count_30m", "cancellations in 30 min"),
]
RULES = [rule for rule, _, _ in CHARTS]  # the rules the window pass judges, as clear_quiet gets

# Rolled up and evaluated under the same snapshot: covered, as after a pass.
WINDOWS = """
INSERT INTO window_metrics (window_start, payment_attempts, payments_failed, events,
                            rolled_snapshot, evaluated_snapshot)
SELECT w, 40, 2, 120, s.snap, s.snap
  FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '5 minutes',
                       interval '5 minutes') AS w,
       (SELECT pg_current_snapshot() AS snap) AS s
"""

READINGS = """
INSERT INTO rule_readings (rule, scope, measure, window_start, label, observed, expected, bound,
                           bound_kind)
SELECT c.rule, 'all', c.measure, w, c.label, 2, 2.5, 9, 'above'
  FROM unnest(%(rules)s::text[], %(measures)s::text[], %(labels)s::text[])
           AS c(rule, measure, label),
       generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '5 minutes',
                       interval '5 minutes') AS w
"""

# The month's other anomalies: 90% resolved (half of those cleared before), the rest open or
# acknowledged and cleared at their end, as migration 0013 leaves old ones.
HISTORY = """
INSERT INTO anomalies (rule, scope, severity, status, title, window_start, window_end,
                       detected_at, resolved_at, cleared_at, evidence)
SELECT r.rule, 'hist_' || n, (ARRAY['low', 'medium', 'high'])[1 + n %% 3],
       CASE WHEN n %% 10 = 0 THEN 'acknowledged' WHEN n %% 10 = 1 THEN 'open' ELSE 'resolved' END,
       'history ' || n, t.start, t.start + interval '10 minutes', t.start + interval '10 minutes',
       CASE WHEN n %% 10 > 1 THEN t.start + interval '2 hours' END,
       CASE WHEN n %% 10 < 2 OR n %% 2 = 0 THEN t.start + interval '10 minutes' END,
       jsonb_build_object('chart', jsonb_build_object('measure', r.measure, 'scope', 'all'))
  FROM generate_series(1, %(n)s) AS n,
       LATERAL (SELECT %(start)s::timestamptz
                       + (n %% ((%(windows)s - 24)::int)) * interval '5 minutes' AS start) AS t,
       LATERAL (SELECT (%(rules)s::text[])[1 + n %% cardinality(%(rules)s::text[])] AS rule,
                       (%(measures)s::text[])[1 + n %% cardinality(%(rules)s::text[])] AS measure)
               AS r
"""

# Unresolved, uncleared incidents ending 0-20 minutes before LAST_END.
INCIDENTS = """
INSERT INTO anomalies (rule, scope, severity, status, title, window_start, window_end,
                       detected_at, evidence)
SELECT r.rule, 'inc_' || n, (ARRAY['low', 'medium', 'high'])[1 + n %% 3],
       CASE WHEN n %% 3 = 0 THEN 'acknowledged' ELSE 'open' END, 'incident ' || n,
       e.window_end - (1 + n %% 3) * interval '5 minutes', e.window_end, e.window_end,
       jsonb_build_object('chart', jsonb_build_object('measure', r.measure, 'scope', 'all'))
  FROM generate_series(1, %(n)s) AS n,
       LATERAL (SELECT %(last_end)s::timestamptz - (n %% 5) * interval '5 minutes' AS window_end)
               AS e,
       LATERAL (SELECT (%(rules)s::text[])[1 + n %% cardinality(%(rules)s::text[])] AS rule,
                       (%(measures)s::text[])[1 + n %% cardinality(%(rules)s::text[])] AS measure)
               AS r
"""

ANNOUNCE = """
INSERT INTO notifications (channel, kind, anomaly_id, severity, status, attempts, sent_at)
SELECT 'slack', 'opened', id, severity, 'sent', 1, detected_at
  FROM anomalies WHERE scope LIKE %(prefix)s AND id %% %(every)s = 0
"""

DROP_INCIDENTS = "DELETE FROM anomalies WHERE scope LIKE 'inc\\_%'"
STALE = "UPDATE window_metrics SET evaluated_snapshot = NULL WHERE window_start = %(at)s"
QUEUED = "SELECT count(*) FROM notifications WHERE kind = 'cleared'"


def chart_params() -> dict[str, list[str]]:
    rules, measures, labels = (list(column) for column in zip(*CHARTS, strict=True))
    return {"rules": rules, "measures": measures, "labels": labels}


def load_month(url: str, history: int) -> None:
    windows = int((END - START) / STEP)
    params = {"start": START, "end": END, "n": history, "windows": windows, **chart_params()}
    with psycopg.connect(url) as conn:
        conn.execute(WINDOWS, params)
        conn.execute(READINGS, params)
        conn.execute(HISTORY, params)
        conn.execute(ANNOUNCE, {"prefix": "hist\\_%", "every": 10})
    vacuum(url, analyze=True)


def add_incidents(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(DROP_INCIDENTS)
        conn.execute(INCIDENTS, {"n": count, "last_end": LAST_END, **chart_params()})
        conn.execute(ANNOUNCE, {"prefix": "inc\\_%", "every": 2})
    vacuum(url, analyze=True)


def vacuum(url: str, analyze: bool = False) -> None:
    """Rolled-back UPDATEs leave dead row versions; each run starts without them."""
    verb = "VACUUM (ANALYZE)" if analyze else "VACUUM"
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("anomalies", "notifications", "window_metrics", "rule_readings"):
            conn.execute(f"{verb} {name}")


def timed(
    url: str,
    runs: int,
    work: Callable[[psycopg.Connection], int],
    prepare: Callable[[psycopg.Connection], object] | None = None,
    clean: bool = False,
) -> tuple[float, int, int]:
    """Median ms of `work` over `runs` rolled-back transactions on one connection (as a pass
    runs on a pooled one), after one untimed run that warms its caches; what the last run
    returned, and the 'cleared' notices it queued."""
    times, result, queued = [], 0, 0
    with psycopg.connect(url) as conn:
        for run in range(runs + 1):
            if prepare:
                prepare(conn)
            t0 = time.perf_counter()
            result = work(conn)
            if run:
                times.append((time.perf_counter() - t0) * 1000)
            row = conn.execute(QUEUED).fetchone()
            queued = row[0] if row else 0
            conn.rollback()
            if clean:
                vacuum(url)
    return statistics.median(times), result, queued


def clear_at(now: datetime) -> Callable[[psycopg.Connection], int]:
    return lambda conn: len(clearing.clear_quiet(conn, GAP, RULES, now))


def stale(conn: psycopg.Connection) -> None:
    conn.execute(STALE, {"at": LAST_END})


def measure(url: str, incidents: int, total: int) -> list[str]:
    quiet_ms, _, _ = timed(url, 5, clear_at(LAST_END + STEP))
    stale_ms, _, _ = timed(url, 5, clear_at(END), prepare=stale)
    clear_ms, cleared, queued = timed(url, 3, clear_at(END), clean=True)
    return [
        f"{incidents:,}",
        f"{total:,}",
        f"{quiet_ms:.1f}",
        f"{stale_ms:.1f}",
        f"{clear_ms:.1f}",
        f"{cleared:,}",
        f"{queued:,}",
        f"{1000 * clear_ms / incidents:.0f}",
    ]


def explain(url: str) -> None:
    for title, now in (("nothing to clear", LAST_END + STEP), ("all clear", END)):
        with psycopg.connect(url) as conn:
            plan = conn.execute(
                f"EXPLAIN (ANALYZE, BUFFERS) {clearing.CLEAR}",
                {"gap": GAP, "rules": RULES, "now": now},
            ).fetchall()
            conn.rollback()
        print(f"EXPLAIN (ANALYZE, BUFFERS) clearing.CLEAR, {title}:")
        print("\n".join(row[0] for row in plan))
        print()
    vacuum(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", default="10,1000,20000", help="comma-separated counts")
    parser.add_argument("--history", type=int, default=200_000, help="other anomalies")
    parser.add_argument("--explain", action="store_true", help="plans for the largest size")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.incidents.split(","))
    rows = [
        [
            "incidents",
            "total anomalies",
            "pass (nothing to clear) ms",
            "pass (last window stale) ms",
            "pass (all clear) ms",
            "cleared",
            "notices",
            "per-incident µs",
        ]
    ]
    with bench.database_server(args.database_url) as server:
        with bench.scratch_database(server, SCRATCH_DB, STATEMENT_TIMEOUT_MS) as url:
            t0 = time.perf_counter()
            load_month(url, args.history)
            print(f"  loaded {args.history:,} anomalies in {time.perf_counter() - t0:.1f} s")
            for size in sizes:
                add_incidents(url, size)
                rows.append(measure(url, size, args.history + size))
                print(f"  measured {size:,} incidents", flush=True)
            if args.explain:
                explain(url)
    bench.table(rows)


if __name__ == "__main__":
    main()
