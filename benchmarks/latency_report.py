"""What benchmarks/latency.py prints: each spike's seconds to Slack and where they went (from
Dagster's run times), with min / median / p95, and the stack's CPU per process."""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.slack_api

import bench_support as bench
import httpx
from bench_support import HOST, table

WINDOW = 300  # seconds


@dataclass
class Spike:
    position: str
    window: float  # epoch seconds of its window's start
    last_event: float | None = None  # when the API acknowledged its last event
    anomaly: int | None = None
    severity: str = "-"
    posted: float | None = None  # when the fake Slack accepted the opening message
    note: str = ""

    @property
    def seconds(self) -> float | None:
        if self.posted is None or self.last_event is None:
            return None
        return self.posted - self.last_event


def clock(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


# --- where the time went -----------------------------------------------------------------------
def dagster_runs(port: int, since: float) -> list[dict]:
    query = f"{{ runsOrError(filter: {{createdAfter: {since}}}, limit: 1000) {{ __typename"
    query += " ... on Runs { results { runId jobName status creationTime startTime endTime } } } }"
    url = f"http://{HOST}:{port}/graphql"
    answer = httpx.post(url, json={"query": query}, timeout=30).json()["data"]["runsOrError"]
    return list(answer.get("results", []))


def during(runs: list[dict], job: str, moment: float) -> dict | None:
    """The run of `job` that was going at `moment`."""
    for run in runs:
        end = run["endTime"] or math.inf
        if run["jobName"] == job and run["startTime"] and run["startTime"] <= moment <= end:
            return run
    return None


def breakdown(spikes: list[Spike], runs: list[dict], detected: dict[int, float]) -> None:
    rows = [["spike", "to window close", "to rules run", "its launch", "rules run",
             "to alerts run", "its launch", "to post", "total"]]  # fmt: skip
    for n, spike in enumerate(spikes, 1):
        if spike.posted is None or spike.last_event is None or spike.anomaly is None:
            continue
        close = spike.window + WINDOW
        rules = during(runs, "rules_job", detected.get(spike.anomaly, math.nan))
        alerts = during(runs, "alerts_job", spike.posted)
        if rules is None or alerts is None:
            rows.append([f"{n} {spike.position}", f"{close - spike.last_event:.0f}", *["?"] * 6,
                         f"{spike.seconds:.0f}"])  # fmt: skip
            continue
        marks = [
            spike.last_event,
            close,
            rules["creationTime"],
            rules["startTime"],
            rules["endTime"],
            alerts["creationTime"],
            alerts["startTime"],
            spike.posted,
        ]
        steps = [f"{b - a:.0f}" for a, b in zip(marks, marks[1:], strict=False)]
        rows.append([f"{n} {spike.position}", *steps, f"{spike.seconds:.0f}"])
    table(rows)
    print("(seconds: last event -> window close -> rules run created (schedule tick) -> started")
    print(" (queue, worker start) -> ended -> alerts run created (run status sensor) -> started")
    print(" -> the Slack post)\n")


# --- CPU --------------------------------------------------------------------------------------
PARTS = ["api", "dagster-webserver", "dagster-daemon", "its children", "postgres", "up"]


def own_cpu(pid: int | None) -> float | None:
    """CPU seconds of `pid` itself (every thread), without its children."""
    try:
        return sum(bench._stat(pid)[11:13]) / bench.TICKS if pid else None
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float | None]:
    """CPU seconds so far of each part of the stack; the daemon apart from its children (its
    code server, the run workers it launches), `up` itself only (the rest are its children)."""
    snap = {name: bench.tree_cpu(pid) for name, pid in pids.items() if name != "up"}
    daemon, tree = own_cpu(pids.get("dagster-daemon")), snap.get("dagster-daemon")
    snap["dagster-daemon"] = daemon
    snap["its children"] = None if daemon is None or tree is None else tree - daemon
    snap["up"] = own_cpu(pids.get("up"))
    snap["machine"] = bench.machine_busy()
    return snap


def cpu_row(label: str, before: dict, after: dict, seconds: float, runs: int) -> list[str]:
    used = {k: None if before.get(k) is None or after.get(k) is None else after[k] - before[k]
            for k in [*PARTS, "machine"]}  # fmt: skip
    share = {k: "-" if v is None else f"{100 * v / seconds:.1f}" for k, v in used.items()}
    total = 100 * sum(v or 0.0 for k, v in used.items() if k != "machine") / seconds
    return [label, f"{seconds:.0f}", *(share[k] for k in PARTS), f"{total:.1f}",
            share["machine"], str(runs)]  # fmt: skip


# --- the run ----------------------------------------------------------------------------------
def report(spikes: list[Spike]) -> None:
    rows = [["spike", "position", "window (UTC)", "last event", "posted", "severity", "s to Slack"]]
    for n, spike in enumerate(spikes, 1):
        seconds = spike.seconds
        rows.append([str(n), spike.position, clock(spike.window), clock(spike.last_event),
                     clock(spike.posted), spike.severity,
                     "-" if seconds is None else f"{seconds:.1f}"])  # fmt: skip
    table(rows)
    for n, spike in enumerate(spikes, 1):
        if spike.note:
            print(f"spike {n}: {spike.note}")
    measured = sorted(s for spike in spikes if (s := spike.seconds) is not None)
    if measured:
        p95 = measured[max(0, math.ceil(0.95 * len(measured)) - 1)]
        table([["spikes posted", "min s", "median s", "p95 s"],
               [f"{len(measured)} of {len(spikes)}", f"{measured[0]:.1f}",
                f"{statistics.median(measured):.1f}", f"{p95:.1f}"]])  # fmt: skip
