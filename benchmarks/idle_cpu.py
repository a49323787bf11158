"""Idle CPU of `sentinelops up`: each process of the stack, in % of one core, nothing sent to it.

    uv run python benchmarks/idle_cpu.py                        # settle 90 s, measure 120 s
    uv run python benchmarks/idle_cpu.py --settle 60 --seconds 300 --label "poll 60 s"

Starts `python -m sentinelops.cli up` as `make run` does (own process group, free ports, a fresh
temporary SENTINELOPS_HOME, the embedded PostgreSQL there; none of the caller's SentinelOps,
Slack, Stripe, OpenAI or Dagster settings), waits until it is up and --settle seconds more, then
samples the CPU of every process over --seconds: each top-level process with its descendants
(live ones, and those exited and reaped meanwhile: run workers, PostgreSQL's backends), the
daemon and webserver split from their code servers, PostgreSQL split by process kind. Runs
launched in the window are counted (the rules schedule launches one every 5 minutes: measure
over a multiple of 300 s for its fair share). Stops everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import bench_support as bench
from bench_support import ROOT, table
from latency_report import own_cpu
from soak import children, stack_pids, stop_stack, wait_up

from sentinelops import embedded

STACK_ENV_PREFIXES = ("SENTINELOPS_", "SLACK_", "STRIPE_", "OPENAI_", "DAGSTER_")


def launch(home: Path, api_port: int, dagster_port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV_PREFIXES)}
    env.pop("DATABASE_URL", None)
    env["SENTINELOPS_HOME"] = str(home)
    cmd = [sys.executable, "-m", "sentinelops.cli", "up", "--api-port", str(api_port)]
    cmd += ["--dagster-port", str(dagster_port)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _kind(line: str) -> str:
    """A short name for a process from its command line."""
    if "postgres:" in line:  # a PostgreSQL child names itself `postgres: <kind> ...`
        rest = line.split("postgres:", 1)[1].split()
        if rest and rest[0] in ("postgres", "sentinelops", "sentinelops_dagster"):
            return "pg backends"  # `postgres: user db host state`
        words = [w for w in rest if not w.startswith(("127.", "["))][:2]
        return "pg " + " ".join(words)
    if "api grpc" in line or "code-server" in line or "code_server" in line:
        return "code server"
    if "execute_run" in line or "execute_step" in line:
        return "run worker"
    return Path(line.split()[0]).name if line else "?"


def snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each part: each top-level process by itself, its direct children
    (with their descendants) by kind; the postmaster's reaped children count as its own."""
    snap: dict[str, float] = defaultdict(float)
    for name, pid in pids.items():
        if pid is None:
            continue
        own = own_cpu(pid)
        if name == "up":
            snap["up"] = own or 0.0
            continue
        if name == "postgres":
            try:  # the postmaster's cutime/cstime: backends and workers that exited
                fields = bench._stat(pid)
                snap["postgres: exited backends"] = sum(fields[13:15]) / bench.TICKS
            except FileNotFoundError:
                pass
        snap[f"{name}: itself"] += own or 0.0
        if name != "postgres":
            try:  # reaped children (run workers, an old code server)
                fields = bench._stat(pid)
                snap[f"{name}: exited children"] += sum(fields[13:15]) / bench.TICKS
            except FileNotFoundError:
                pass
        for child in children(pid):
            used = bench.tree_cpu(child) or 0.0
            snap[f"{name}: {_kind(_cmdline(child))}"] += used
    snap["machine"] = bench.machine_busy()
    return snap


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=90.0, help="seconds after `up` is up")
    parser.add_argument("--seconds", type=float, default=120.0, help="measured idle seconds")
    parser.add_argument("--label", default="idle", help="a name for this measurement")
    parser.add_argument("--keep-home", action="store_true", help="keep SENTINELOPS_HOME")
    return parser.parse_args()


def report(label: str, before: dict, after: dict, seconds: float, runs: int) -> float:
    keys = sorted(set(before) | set(after) - {"machine"})
    keys = [k for k in keys if k != "machine"]
    rows = [["process", "% of one core"]]
    tops: dict[str, float] = defaultdict(float)
    for key in keys:
        used = after.get(key, 0.0) - before.get(key, 0.0)
        rows.append([key, f"{100 * used / seconds:.1f}"])
        tops[key.split(":")[0]] += used
    total = sum(tops.values())
    rows.append(["-- by top-level process", ""])
    for top, used in sorted(tops.items()):
        rows.append([top, f"{100 * used / seconds:.1f}"])
    rows.append(["STACK TOTAL", f"{100 * total / seconds:.1f}"])
    busy = after["machine"] - before["machine"]
    rows.append(["machine (all processes, 2 cores)", f"{100 * busy / seconds:.1f}"])
    print(f"\n{label}: {seconds:.0f} s idle, {runs} run(s) launched in the window")
    table(rows)
    return 100 * total / seconds


def count_runs(db_url: str, since: float) -> int:
    import psycopg

    with psycopg.connect(db_url.rsplit("/", 1)[0] + "/sentinelops_dagster") as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE create_timestamp >= to_timestamp(%s)"
            " AT TIME ZONE 'UTC'",
            (since,),
        ).fetchone()
    return row[0] if row else 0


def main() -> int:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="sentinelops-idle-")).absolute()
    proc, pids = None, {}
    api_port, dagster_port = bench._free_port(), bench._free_port()
    print(f"starting the stack in {home} (api :{api_port}, dagster :{dagster_port})", flush=True)
    try:
        proc = launch(home, api_port, dagster_port)
        output: list[str] = []
        wait_up(proc, output)
        db = embedded.status(home).url()  # type: ignore[union-attr]
        pids = stack_pids(proc.pid, home, db, external=False)
        for child in children(proc.pid):  # a shared code server, if `up` starts one
            if "code-server start" in _cmdline(child):
                pids["code-server"] = child
        print("up; pids:", ", ".join(f"{k}={v}" for k, v in pids.items()), flush=True)
        print(f"settling {args.settle:.0f} s (load {loadavg()})", flush=True)
        time.sleep(args.settle)
        start, before = time.time(), snapshot(pids)
        load0 = loadavg()
        time.sleep(args.seconds)
        end, after = time.time(), snapshot(pids)
        runs = count_runs(db, start)
        print(f"load average before {load0}, after {loadavg()}")
        report(args.label, before, after, end - start, runs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            code = stop_stack(proc, pids)
            if embedded.status(home):
                embedded.stop(home)
            print(f"stack stopped (exit code {code}); logs were in {home / 'logs'}")
        if args.keep_home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
