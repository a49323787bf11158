"""Load benchmark of Stripe webhook ingestion: HTTP path vs direct-insert ceiling, fixed rate.

    uv run python benchmarks/ingest.py --concurrency 32 --workers 1,2 --pool-size 10,20
    uv run python benchmarks/ingest.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Every event is a fixture from tests/fixtures/stripe with a fresh id (evt_bench_<n>), signed (and
its whole HTTP request built) before the clock starts. Each run empties `stripe_events` of a
scratch `sentinelops_bench` database (dropped, recreated and migrated on --database-url's server,
else on the project's embedded one), sends an untimed warm-up, then times:

* direct: repository.STORE_EVENTS, one event per statement, through psycopg, one autocommit
          connection per concurrent sender;
* http:   POST /api/v1/webhooks/stripe to `sentinelops api --workers W` (pool size P), closed loop
          over `concurrency` keep-alive connections;
* rate:   the same POSTs sent open-loop at --rate for --duration; latency counts from each
          event's scheduled send time, so queueing is not hidden (no coordinated omission).

Signatures are made just before each run, so keep a run under the API's 300 s signature tolerance
(stale ones come back 400 and count as errors). After each run it checks that stripe_events holds
exactly one row per 2xx. The last column is CPU over the timed part, in % of one core: this load
generator / the API processes / the PostgreSQL server / everything else on the machine (noise).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial

import bench_support as bench
import uvloop
from bench_support import Event, Send, direct_sender, http_sender, make_events

COLUMNS = "mode|workers|pool|concurrency|events|events/s|p50 ms|p99 ms|errors|cpu% gen/api/db/other"
WARMUP = 500


@dataclass
class Stats:
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return (len(self.latencies) - self.errors) / self.seconds

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


async def closed_loop(send: Send, events: list[Event], concurrency: int) -> Stats:
    """`concurrency` senders, each sending its next event as soon as the last one is answered."""
    pending, latencies, errors = iter(events), [], 0

    async def sender() -> None:
        nonlocal errors
        for event in pending:  # one shared iterator: each event goes out once
            started = time.perf_counter()
            ok = await send(event)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return Stats(time.perf_counter() - started, latencies, errors)


async def open_loop(send: Send, events: list[Event], rate: float) -> Stats:
    """Event i goes out at start + i/rate whatever happened before; latency counts from then."""
    latencies, errors, last = [], 0, 0.0
    start = time.perf_counter() + 0.01

    async def one(event: Event, due: float) -> None:
        nonlocal errors, last
        ok = await send(event)
        now = time.perf_counter()
        latencies.append(now - due)
        errors, last = errors + (not ok), max(last, now)

    tasks = []
    for i, event in enumerate(events):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(event, due)))
    await asyncio.gather(*tasks)
    return Stats(last - start, latencies, errors)


@dataclass
class Row:
    mode: str
    workers: str
    pool: str
    concurrency: int
    stats: Stats
    cpu: str
    checked: bool

    def cells(self) -> list[str]:
        stats, head = self.stats, [self.mode, self.workers, self.pool, str(self.concurrency)]
        numbers = [f"{stats.rate:.0f}", f"{stats.percentile_ms(0.5):.1f}"]
        numbers += [f"{stats.percentile_ms(0.99):.1f}", str(stats.errors)]
        return [*head, str(len(stats.latencies)), *numbers, self.cpu]


@dataclass(frozen=True)
class Target:
    db: str
    pg_pid: int | None
    workers: str = "-"
    pool: str = "-"
    api_pid: int | None = None


Opener = Callable[[], AbstractAsyncContextManager[Send]]


def run(args: argparse.Namespace, target: Target, mode: str, c: int, open_: Opener) -> Row:
    """One run on an emptied table: warm up untimed, time the load, then count the rows."""
    bench.reset_events(target.db)
    count = round(args.rate * args.duration) if mode == "rate" else args.events
    warm, events = make_events(min(WARMUP, count)), make_events(count)
    pids = (target.api_pid, target.pg_pid)

    async def go() -> tuple[Stats, Stats, str]:
        async with open_() as send:
            warmed = await closed_loop(send, warm, c)
            before = [time.process_time(), *map(bench.tree_cpu, pids), bench.machine_busy()]
            if mode == "rate":
                stats = await open_loop(send, events, args.rate)
            else:
                stats = await closed_loop(send, events, c)
            after = [time.process_time(), *map(bench.tree_cpu, pids), bench.machine_busy()]
        return warmed, stats, bench.cpu_split(before, after, stats.seconds)

    warmed, stats, cpu = uvloop.run(go())
    acknowledged = len(warm) + len(events) - warmed.errors - stats.errors
    rows, doubled = bench.stored_events(target.db)
    good = rows == acknowledged and doubled == 0
    print(
        f"{mode:6} w={target.workers} pool={target.pool} c={c}: {rows} rows for"
        f" {acknowledged} 2xx (incl. {len(warm)} warm-up), {doubled} stored twice:"
        f" {'OK' if good else 'MISMATCH'}",
        flush=True,
    )
    return Row(mode, target.workers, target.pool, c, stats, cpu, good)


def print_report(rows: list[Row], rate: float) -> None:
    bench.table([COLUMNS.split("|"), *(row.cells() for row in rows)])
    direct = {row.concurrency: row.stats.rate for row in rows if row.mode == "direct"}
    for row in (row for row in rows if row.mode == "http"):
        ratio = row.stats.rate / direct[row.concurrency]
        verdict = "n/a" if row.concurrency != 32 else "holds" if ratio >= 0.5 else "MISSED"
        print(f"HTTP/direct at concurrency {row.concurrency}, workers {row.workers}, pool", end="")
        print(f" {row.pool}: {ratio:.2f}x (target >= 0.5x at concurrency 32: {verdict})")
    for row in (row for row in rows if row.mode == "rate"):
        p99, errors = row.stats.percentile_ms(0.99), row.stats.errors
        verdict = "holds" if p99 < 50 and not errors else "MISSED"
        print(f"rate {rate:.0f}/s, workers {row.workers}, pool {row.pool}: achieved", end="")
        print(f" {row.stats.rate:.0f}/s, p99 {p99:.1f} ms, {errors} errors (< 50 ms: {verdict})")
    all_good = all(row.checked for row in rows)
    print("row check:", "one row per 2xx in every run" if all_good else "MISMATCH (see above)")


def int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--events", type=int, default=5000, help="events per closed-loop run (default 5000)")
    add("--concurrency", type=int_list, default=[32], help="senders, e.g. 8,32 (default 32)")
    add("--workers", type=int_list, default=[1], help="uvicorn workers, e.g. 1,2 (default 1)")
    add("--pool-size", type=int_list, default=[10], help="SENTINELOPS_DB_POOL_SIZE (default 10)")
    add("--rate", type=float, default=500.0, help="events/s of the rate mode (default 500)")
    add("--duration", type=float, default=10.0, help="seconds of the rate mode (default 10)")
    add("--database-url", default=os.environ.get("DATABASE_URL") or None, help="server to use")
    args = parser.parse_args()
    if not (1 <= args.events <= 100_000 and 1 <= args.rate * args.duration <= 100_000):
        parser.error("keep --events and --rate x --duration between 1 and 100000")
    if max(args.concurrency) > 256 or max(args.workers) > 8 or max(args.pool_size) > 100:
        parser.error("keep --concurrency <= 256, --workers <= 8 and --pool-size <= 100")
    return args


def main() -> None:
    args = parse_args()
    rows: list[Row] = []
    with bench.database_server(args.database_url) as server, bench.scratch_database(server) as db:
        base = Target(db, bench.postmaster_pid(db))
        for c in args.concurrency:
            direct = Target(db, base.pg_pid, pool=str(c))  # one connection per sender
            rows.append(run(args, direct, "direct", c, partial(direct_sender, db, c)))
        for workers, pool in itertools.product(args.workers, args.pool_size):
            with bench.api_server(db, bench.SECRET, workers, pool) as (port, pid):
                target = Target(db, base.pg_pid, str(workers), str(pool), pid)
                for c in args.concurrency:
                    rows.append(run(args, target, "http", c, partial(http_sender, port, c)))
                top = max(args.concurrency)  # the rate mode's connection limit
                rows.append(run(args, target, "rate", top, partial(http_sender, port, top)))
    print()
    print_report(rows, args.rate)


if __name__ == "__main__":
    main()
