"""Detection benchmark: does each rule find the incidents a merchant must hear about, and stay
quiet on ordinary traffic, at every volume?

    uv run python benchmarks/detection.py [--shapes small,medium,large] [--seed N]
        [--rules FILE] [--no-looks] [--list-false] [--database-url URL]

Per shape (tests/merchants.py: small ~100 payments a day, medium ~2,000 with daily and weekly
seasonality and growth, large ~30,000), a deterministic 60-day stream for `--seed` (tune on 1,
hold out 2) is COPY'd into a scratch `sentinelops_bench_detection` database (migrated, dropped at
the end; on --database-url's server, else DATABASE_URL's, else the machine's PostgreSQL). The
product's own code then judges it: `metrics.roll_up` over the 60 days, then for each day of the
evaluated month the `anomalies` asset's own pass (`evaluation.evaluate_range`: every enabled rule
of the rule book, --rules else the packaged rules.toml, each finding recorded and diagnosed),
committed per day. Before each day's pass, every window of the day is also looked at while still
open, at minutes 1 to 4, by the open-window sensor's own `looks.judge` for the rules with
`early_looks` (detection_looks.py), so the closed pass confirms each early breach or marks it
unconfirmed, as in production; --no-looks skips them (the rule book unchanged: its closed
windows keep only their share of the budget). The anomalies are matched to the injected
incidents (definitions are printed), and what the looks did is counted. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.merchants

import psycopg
from bench_support import scratch_database
from detection_looks import LookStats, look_day, windows
from detection_report import DEFINITIONS, Anomaly, Score, print_shape, print_summary, score
from psycopg import sql

from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.looks import early_rules
from sentinelops_pipelines.rules.definitions import RuleBook, load_rules
from sentinelops_pipelines.rules.significance import binomial_sf
from sentinelops_pipelines.storage import metrics
from tests.merchant_incidents import FAIL_RATE, Incident, below_data
from tests.merchants import (
    DAYS,
    EVALUATED_FROM,
    SHAPES,
    START,
    Stream,
    generate,
    load,
)

SCRATCH_DB = "sentinelops_bench_detection"
MACHINE_DB = "postgresql://postgres@127.0.0.1:5432/postgres"
STATEMENT_TIMEOUT_MS = 15 * 60 * 1000
RESET = (
    "TRUNCATE stripe_events, webhook_rejections, window_metrics, window_amounts,"
    " anomalies CASCADE"
)  # scratch data only
SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = 'stripe_events' AND indexname <> 'stripe_events_pkey'
"""
ANOMALIES = """
SELECT rule, scope, severity, window_start, window_end, title, id FROM anomalies
 ORDER BY window_start, rule, scope
"""


def load_stream(url: str, stream: Stream) -> int:
    """Replace the scratch data with the stream: COPY FREEZE into the truncated table with its
    secondary indexes dropped, the indexes rebuilt from their own definitions, VACUUM ANALYZE."""
    with psycopg.connect(url) as conn:
        conn.execute(RESET)
        indexes = conn.execute(SECONDARY_INDEXES).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        events = load(conn, stream, freeze=True)
        conn.execute("SET maintenance_work_mem = '512MB'")  # this session's index builds only
        for _, definition in indexes:
            conn.execute(definition)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return events


def roll_up(url: str) -> None:
    """The rollups of all 60 days, a day per statement (as a backfill would)."""
    with psycopg.connect(url) as conn:
        for day in range(DAYS):
            start = START + timedelta(days=day)
            metrics.roll_up(conn, start, start + timedelta(days=1))
            conn.commit()


# The failed and attempted payments of every 2 hours overlapping a span, from the rollups.
BEST_TWO_HOURS = """
SELECT failed, attempts FROM (
    SELECT window_start,
           sum(payments_failed) OVER h2 AS failed, sum(payment_attempts) OVER h2 AS attempts
      FROM window_metrics
     WHERE window_start >= %(start)s - interval '2 hours'
       AND window_start < %(end)s + interval '2 hours'
    WINDOW h2 AS (ORDER BY window_start
                  RANGE BETWEEN interval '115 minutes' PRECEDING AND CURRENT ROW)
) w WHERE window_start >= %(start)s
"""


def as_realized(url: str, incidents: list[Incident]) -> list[Incident]:
    """Failure-rate incidents whose realized data chance alone matches at least once a month
    (their most telling 2 hours, at the usual rate, over 8,640 windows), marked below data:
    at ~100 payments a day a 90-minute outage may see 3 attempts."""
    out = []
    with psycopg.connect(url) as conn:
        for i in incidents:
            if i.rule != "payment_failure_spike" or i.below_data:
                out.append(i)
                continue
            rows = conn.execute(BEST_TWO_HOURS, {"start": i.start, "end": i.end}).fetchall()
            _, f, n = min((binomial_sf(int(f), int(n), FAIL_RATE), f, n) for f, n in rows)
            out.append(replace(i, below_data=below_data(int(f), int(n), "only")))
    return out


def judge(url: str, book: RuleBook, stats: LookStats | None) -> list[Anomaly]:
    """The evaluated month judged as the `anomalies` asset judges it, a day per run, each day's
    windows first looked at while open (with `stats`, which counts what the looks did); the
    anomalies recorded."""
    with psycopg.connect(url) as conn:
        for day in range(30):
            s = EVALUATED_FROM + timedelta(days=day)
            if stats is not None:
                t0 = time.perf_counter()
                look_day(conn, book, s, s + timedelta(days=1), stats)
                stats.seconds += time.perf_counter() - t0
            done = evaluate_range(conn, book, s, s + timedelta(days=1), "medium")
            if stats is not None:
                stats.unconfirmed_marked += done.unconfirmed
            conn.commit()
        if stats is not None:
            windows(conn, book, stats)
        return [Anomaly(*row) for row in conn.execute(ANOMALIES).fetchall()]


def run_shape(url: str, name: str, seed: int, book: RuleBook, with_looks: bool) -> Score:
    stream = generate(SHAPES[name], seed)
    timings, t0 = {}, time.perf_counter()
    events = load_stream(url, stream)
    timings["load"] = (t1 := time.perf_counter()) - t0
    roll_up(url)
    timings["rollup"] = (t2 := time.perf_counter()) - t1
    stats = LookStats() if with_looks else None
    found = judge(url, book, stats)
    timings["evaluate"] = time.perf_counter() - t2
    if stats is not None:
        timings["evaluate"] -= stats.seconds
        timings["looks"] = stats.seconds
    result = score(name, as_realized(url, stream.incidents), stream.benign, found)
    result.timings, result.events, result.looks = timings, events, stats
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="small,medium,large")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rules", default=None, help="a rules TOML file (default: packaged)")
    parser.add_argument(
        "--no-looks", action="store_true",
        help="closed windows only, no early looks (the rule book unchanged)",
    )  # fmt: skip
    parser.add_argument("--list-false", action="store_true", help="print false alarms' titles")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or MACHINE_DB)
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if unknown := [s for s in shapes if s not in SHAPES]:
        parser.error(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)}")
    book = load_rules(args.rules)
    role = {1: "tuning seed", 2: "held-out seed"}.get(args.seed, "other seed")
    print(f"detection benchmark: seed {args.seed} ({role}); rules {args.rules or 'rules.toml'}")
    print(f"shapes {', '.join(shapes)}; evaluated month {EVALUATED_FROM:%Y-%m-%d} .. +30 days,"
          f" after 30 days of history")  # fmt: skip
    early = ", ".join(early_rules(book)) or "none"
    looking = "off (--no-looks)" if args.no_looks else "every window at minutes 1-4, then closed"
    print(f"early looks: {looking}; early-look rules: {early}\n")
    print(DEFINITIONS)
    started, scores = time.perf_counter(), []
    with scratch_database(args.database_url, SCRATCH_DB, STATEMENT_TIMEOUT_MS) as url:
        for name in shapes:
            scores.append(run_shape(url, name, args.seed, book, not args.no_looks))
            print_shape(scores[-1], args.list_false)
    print_summary(scores)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
