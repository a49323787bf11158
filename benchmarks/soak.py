"""Soak test: sustained signed Stripe webhooks against the whole `sentinelops up` stack.

    uv run python benchmarks/soak.py --rate 300 --duration 300
    uv run python benchmarks/soak.py --rate 100 --duration 60 --database-url postgresql://...

Starts `python -m sentinelops.cli up` (own process group, SENTINELOPS_HOME=--home, by default a
fresh temporary directory, so the user's .sentinelops is never touched; embedded PostgreSQL unless
--database-url) with the 5-minute rules schedule running, then sends distinct events
(evt_soak_<tag>_<n>) open-loop at --rate, first for --warmup seconds (default 60: Dagster's daemon
starts its code servers and the API's pool fills; memory is sampled only after it), then for
--duration, each signed with the stack's generated
webhook secret when it goes out. A non-2xx (or a broken connection) is retried like Stripe would,
with back-off, at most RETRIES times; latency counts from the event's scheduled send time to its
2xx, so queueing is not hidden. Afterwards it checks that every 2xx id is stored exactly once,
counts the rules runs the schedule launched during the soak (Dagster GraphQL) and the
window_metrics rows computed, compares the RSS of each stack process (with its descendants) at
start and end, and stops the stack with SIGTERM. Loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_support as bench
import httpx
import psycopg
import stripe
import uvloop
from bench_support import HOST, ROOT, TEMPLATES, WEBHOOK, Event, http_sender, table

from sentinelops import embedded

RETRIES = 5  # extra attempts after the first, at 0.5, 1, 2, 4, 8 s
CONNECTIONS = 32
GROWTH_TARGET = 10.0  # % RSS growth per process over the soak


def signed(event: dict, secret: str) -> Event:
    text = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(text, secret)
    head = f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\nStripe-Signature: {signature}"
    head += f"\r\nContent-Type: application/json\r\nContent-Length: {len(text)}\r\n\r\n"
    return Event(None, (head + text).encode())


class Load:
    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.latencies: list[float] = []
        self.sent = self.non2xx = self.retries = self.failed = 0
        self.seconds = 0.0

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000 if ordered else math.nan


async def soak(port: int, secret: str, rate: float, duration: float, tag: str) -> Load:
    load, count = Load(), round(rate * duration)
    templates = itertools.cycle(TEMPLATES)
    async with http_sender(port, CONNECTIONS) as send:

        async def deliver(event_id: str, template: dict, due: float) -> None:
            event = {**template, "id": event_id}
            for attempt in range(RETRIES + 1):
                if attempt:
                    load.retries += 1
                    await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                load.sent += 1
                if await send(signed(event, secret)):
                    load.acked.add(event_id)
                    load.latencies.append(time.perf_counter() - due)
                    return
                load.non2xx += 1
            load.failed += 1

        start, tasks = time.perf_counter() + 0.01, []
        for i in range(count):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(deliver(f"evt_soak_{tag}_{i}", next(templates), due)))
        # Bounded: each attempt times out after 30 s in http_sender, back-off adds 15.5 s.
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=(RETRIES + 1) * 31 + 30)
        load.seconds = time.perf_counter() - start
    return load


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return found


def rss_mb(pid: int | None, tree: bool) -> tuple[float, float, int] | None:
    """(VmRSS MB, RssAnon MB, processes) of `pid` (plus descendants if `tree`, except transient
    run workers, `dagster api execute_run`); None if it is gone."""
    if pid is None or not Path(f"/proc/{pid}").exists():
        return None
    rss = anon = procs = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            if b"execute_run" in Path(f"/proc/{current}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith(("VmRSS:", "RssAnon:")):
                    kb = int(line.split()[1])
                    rss, anon = (rss + kb, anon) if line[0] == "V" else (rss, anon + kb)
        except (FileNotFoundError, ProcessLookupError):
            continue
        procs += 1
        if tree:
            stack += children(current)
    return rss / 1024, anon / 1024, procs


def stack_pids(up: int, home: Path, db_url: str, external: bool) -> dict[str, int | None]:
    pids: dict[str, int | None] = {"up": up, "api": None, "dagster-webserver": None}
    pids["dagster-daemon"] = None
    for child in children(up):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        line = b" ".join(argv).decode(errors="replace")
        for name in ("dagster-webserver", "dagster-daemon"):
            if name in line:
                pids[name] = child
        if "code-server start" in line:  # the one code server `up` starts for both
            pids["code-server"] = child
        if "sentinelops.cli api" in line:
            pids["api"] = child
    if external:
        pids["postgres"] = bench.postmaster_pid(db_url)  # None unless it runs on this machine
    else:
        pids["postgres"] = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
    return pids


def memory(pids: dict[str, int | None]) -> dict[str, tuple[float, float, int] | None]:
    return {name: rss_mb(pid, tree=name != "up") for name, pid in pids.items()}


def check_stored(db_url: str, tag: str, acked: set[str]) -> tuple[int, int, int]:
    """(lost 2xx ids, rows delivered more than once, stored ids never acknowledged)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, deliveries FROM stripe_events WHERE id LIKE %s", (f"evt_soak_{tag}_%",)
        ).fetchall()
    stored = {row[0] for row in rows}  # id is the primary key: at most one row each
    return len(acked - stored), sum(row[1] > 1 for row in rows), len(stored - acked)


def rules_runs(dagster_port: int, since: float) -> list[str]:
    tags = '{key: "dagster/schedule_name", value: "rules_schedule"}'
    query = f"{{ runsOrError(filter: {{tags: [{tags}], createdAfter: {since}}}) {{"
    query += " __typename ... on Runs { results { runId status tags { key value } } } } }"
    url = f"http://{HOST}:{dagster_port}/graphql"
    answer = httpx.post(url, json={"query": query}, timeout=30).json()["data"]["runsOrError"]
    out = []
    for run in answer.get("results", []):
        key = next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), "?")
        out.append(f"{key} {run['status']}")
    return sorted(out)


def windows_computed(db_url: str, since: float) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM window_metrics WHERE computed_at >= to_timestamp(%s)", (since,)
        ).fetchone()
    return row[0] if row else 0


def start_stack(args: argparse.Namespace, home: Path) -> tuple[subprocess.Popen, list[str]]:
    env = dict(os.environ, SENTINELOPS_HOME=str(home))
    for name in ("DATABASE_URL", "STRIPE_WEBHOOK_SECRET", "SENTINELOPS_API_TOKEN"):
        env.pop(name, None)  # generated secrets; the database only if asked for
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "sentinelops.cli", "up", "--api-port", str(args.api_port)]
    cmd += ["--dagster-port", str(args.dagster_port)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    wait_up(proc, output, timeout=120)
    return proc, output


def wait_up(proc: subprocess.Popen, output: list[str], timeout: float = 180) -> None:
    """Until `up` says the stack is up, its output collected in `output` (read all along, so
    `up` never blocks on a full pipe); RuntimeError with its tail if it exits or times out."""
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "SentinelOps is up" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "".join(output[-40:])
            raise RuntimeError(f"`sentinelops up` did not come up; its output:\n{tail}")


def stop_stack(proc: subprocess.Popen, pids: dict[str, int | None]) -> int | None:
    """SIGTERM to `up`; if it has not exited within 60 s, SIGKILL its group and its children's."""
    code = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for name, pid in pids.items():  # each started in its own group by `up`
        if pid and name not in ("up", "postgres"):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return code


def report(args: argparse.Namespace, load: Load, lost: int, twice: int, extra: int) -> bool:
    achieved = len(load.acked) / load.seconds if load.seconds else 0.0
    head = "target/s|achieved/s|sent|2xx|non-2xx|retries|lost|p50 ms|p99 ms|max ms".split("|")
    cells = [f"{args.rate:.0f}", f"{achieved:.1f}", str(load.sent), str(len(load.acked))]
    cells += [str(load.non2xx), str(load.retries), str(lost)]
    cells += [f"{load.ms(q):.1f}" for q in (0.5, 0.99, 1.0)]
    table([head, cells])
    print(f"({load.failed} events gave up after {RETRIES} retries; {twice} ids delivered more than")
    print(f" once (retries after a lost answer); {extra} stored without a 2xx)\n")
    return lost == 0 and load.failed == 0


def memory_report(start: dict, end: dict) -> bool:
    """Growth of VmRSS, except PostgreSQL's of RssAnon: a backend's RSS also counts every page of
    shared buffers it has touched, shared memory that cannot grow past shared_buffers."""
    rows, good = [["process", "procs", "start MB", "end MB", "growth %", "anon start/end MB"]], True
    for name, before in start.items():
        after = end.get(name)
        if before is None or after is None:
            rows.append([name, "-", "-", "-", "gone" if before else "n/a", "-"])
            good &= before is None
            continue
        judged = 1 if name == "postgres" else 0
        if not before[judged]:
            rows.append([name, f"{before[2]}/{after[2]}", "0", f"{after[0]:.0f}", "n/a", "-"])
            continue
        growth = 100 * (after[judged] - before[judged]) / before[judged]
        good &= growth < GROWTH_TARGET
        mark = "" if growth < GROWTH_TARGET else " !"
        cells = [name, f"{before[2]}/{after[2]}", f"{before[0]:.0f}", f"{after[0]:.0f}"]
        rows.append([*cells, f"{growth:+.1f}{mark}", f"{before[1]:.0f}/{after[1]:.0f}"])
    table(rows)
    print("(with descendants: dagster's code servers, PostgreSQL's backends; not `up`'s, listed")
    print(" on their own, nor transient run workers; postgres growth is of RssAnon, see anon)\n")
    return good


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--rate", type=float, default=300.0, help="events/s (default 300)")
    add("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    add("--warmup", type=float, default=60.0, help="seconds of load before (default 60)")
    add("--api-port", type=int, default=0, help="default: a free port")
    add("--dagster-port", type=int, default=0, help="default: a free port")
    add("--home", type=Path, help="SENTINELOPS_HOME of the stack (default: a fresh temp dir)")
    add("--database-url", help="default: the stack's embedded server in --home")
    args = parser.parse_args()
    if not (0 < args.rate <= 2000 and 0 < args.duration <= 3600 and 0 <= args.warmup <= 600):
        parser.error("keep --rate in (0, 2000], --duration in (0, 3600], --warmup in [0, 600]")
    args.api_port = args.api_port or bench._free_port()
    args.dagster_port = args.dagster_port or bench._free_port()
    return args


def main() -> int:
    args = parse_args()
    home = (args.home or Path(tempfile.mkdtemp(prefix="sentinelops-soak-"))).absolute()
    tag = f"{int(time.time())}_{os.getpid()}"
    proc, pids, ok, lost_warm = None, {}, False, 0
    try:
        print(f"starting the stack in {home} (api :{args.api_port}, dagster :{args.dagster_port})")
        proc, _ = start_stack(args, home)
        db_url = args.database_url or embedded.status(home).url()  # type: ignore[union-attr]
        secret = (home / "webhook-secret").read_text().strip()
        pids = stack_pids(proc.pid, home, db_url, bool(args.database_url))
        print("up; pids:", ", ".join(f"{k}={v}" for k, v in pids.items()), flush=True)
        if args.warmup:
            print(f"warm-up: {args.rate:.0f}/s for {args.warmup:.0f} s", flush=True)
            warm = uvloop.run(soak(args.api_port, secret, args.rate, args.warmup, f"{tag}_w"))
            lost_warm = check_stored(db_url, f"{tag}_w", warm.acked)[0] + warm.failed
            print(f"warm-up: {len(warm.acked)} events acknowledged, {lost_warm} lost", flush=True)
        mem_start, since = memory(pids), time.time()
        print(f"soak: {args.rate:.0f}/s for {args.duration:.0f} s from", end=" ")
        print(datetime.now(UTC).strftime("%H:%M:%S UTC"), flush=True)
        load = uvloop.run(soak(args.api_port, secret, args.rate, args.duration, f"{tag}_m"))
        mem_end = memory(pids)
        lost, twice, extra = check_stored(db_url, f"{tag}_m", load.acked)
        runs, windows = rules_runs(args.dagster_port, since), windows_computed(db_url, since)
        load_ok = report(args, load, lost, twice, extra)
        memory_ok = memory_report(mem_start, mem_end)
        print(f"rules runs launched by rules_schedule during the soak: {len(runs)}", end="")
        print(f" ({'; '.join(runs) or 'none'}); window_metrics rows computed: {windows}")
        ticks = int(args.duration // 300)
        print(f"  (expected >= {ticks}: one per 5-minute boundary the soak spans)")
        code = stop_stack(proc, pids)
        print(f"stack stopped with SIGTERM: exit code {code}")
        print(f"VERDICT load: {'PASS' if load_ok else 'FAIL'} ({lost} lost 2xx events)")
        print(f"VERDICT memory: {'PASS' if memory_ok else 'FAIL'} (growth < {GROWTH_TARGET}%)")
        print(f"VERDICT schedule: {'PASS' if len(runs) >= ticks else 'FAIL'}")
        print(f"VERDICT shutdown: {'PASS' if code == 0 else 'FAIL'}")
        ok = load_ok and memory_ok and len(runs) >= ticks and code == 0 and not lost_warm
    finally:
        if proc is not None:
            stop_stack(proc, pids)
            if not args.database_url and embedded.status(home):
                embedded.stop(home)  # `up` was killed before it stopped its server
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
