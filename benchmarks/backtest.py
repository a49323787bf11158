"""How long `sentinelops rules backtest` takes over 30 days of stored rollups.

    uv run python benchmarks/backtest.py
    uv run python benchmarks/backtest.py --events 3000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

A scratch `sentinelops_bench_backtest` database (migrated, dropped at the end; on --database-url's
server, else DATABASE_URL's, else the project's embedded one) gets the synthetic history of
benchmarks/rules_history.py (`--events` events over the 30 days before 2026-11-01 UTC), rolled
up once (8,640 windows). Then the command runs as a user runs it, in a fresh process, over those
30 days, with two candidates: the packaged rules with one rule turned off (the other rules are
defined alike, so evaluated once for both sides), and with every rule's description edited (so
every rule is evaluated twice: the worst case). Prints the wall time of each and the first
table. Not a test: nothing is asserted; the target is under a minute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_support as bench
import psycopg
import rules_history as history

from sentinelops_pipelines.rules.definitions import default_rules_text
from sentinelops_pipelines.storage import metrics as metrics_sql

SCRATCH_DB = "sentinelops_bench_backtest"
STATEMENT_TIMEOUT_MS = 15 * 60 * 1000  # bounds any single statement


def candidates(directory: Path) -> dict[str, Path]:
    text = default_rules_text()
    one_off = text.replace("[rules.refund_spike]\n", "[rules.refund_spike]\nenabled = false\n")
    every = text.replace('description = "', 'description = "(candidate) ')
    paths = {
        "one rule off": directory / "one-off.toml",
        "every rule edited": directory / "all.toml",
    }
    for (_, path), content in zip(paths.items(), (one_off, every), strict=True):
        path.write_text(content)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the history")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    args = parser.parse_args()
    with (
        bench.database_server(args.database_url) as server,
        bench.scratch_database(server, SCRATCH_DB, STATEMENT_TIMEOUT_MS) as url,
    ):
        loaded = history.load(url, args.events)
        print(f"history: {loaded['rows']:,} events")
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            metrics_sql.roll_up(conn, history.START, history.END)
        print(f"rolled up 30 days in {time.perf_counter() - started:.1f} s")
        env = {**os.environ, "DATABASE_URL": url}
        env.pop("SENTINELOPS_RULES_FILE", None)
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for name, path in candidates(Path(tmp)).items():
                command = [sys.executable, "-m", "sentinelops.cli", "rules", "backtest",
                           "--rules", str(path), "--since", f"{history.START:%Y-%m-%d}",
                           "--until", f"{history.END:%Y-%m-%d}"]  # fmt: skip
                started = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                rows.append([name, f"{time.perf_counter() - started:.1f}"])
                if len(rows) == 1:
                    print(done.stdout)
        bench.table([["candidate", "wall s (30 days, whole command)"], *rows])


if __name__ == "__main__":
    main()
