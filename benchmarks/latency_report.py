"""What benchmarks/latency.py prints: each spike's seconds to Slack, what found it (an early
look at the open window, or the closed window's rules run) and where the time went, min /
median / p95 against the targets, duplicate alerts, and the stack's CPU per process and phase."""

from __future__ import annotations

import math
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.slack_api

import bench_support as bench
import httpx
from bench_support import HOST, table

WINDOW = 300  # seconds
MEDIAN_TARGET, P95_TARGET = 75.0, 120.0  # seconds, issue 18
IDLE_TARGET = 10.0  # % of one core: the idle stack's CPU, issue 18


@dataclass
class Spike:
    position: str
    window: float  # epoch seconds of its window's start
    last_event: float | None = None  # when the API acknowledged its last event
    anomaly: int | None = None
    severity: str = "-"
    detected: float | None = None  # the anomaly's detected_at
    posted: float | None = None  # when the fake Slack accepted the top-level message
    post_change: str | None = None  # the outbox row that posted it: opened, escalated, ...
    evidence: dict | None = None  # the spike window's row in anomaly_windows, read at the end
    note: str = ""
    begins: float = 0.0  # epoch seconds of its first payment

    @property
    def seconds(self) -> float | None:
        """Last event's 2xx -> the post; None if not posted, or posted before the spike began
        (an incident opened by an earlier spike's breach that had not ended: not this one's)."""
        if self.posted is None or self.last_event is None or self.posted < self.begins:
            return None
        return self.posted - self.last_event

    @property
    def look(self) -> tuple[int, float, str] | None:
        """(minutes seen, when, confirmed / unconfirmed / pending) of the early look that
        recorded the spike's window, from its evidence; None if the closed window did."""
        evidence = self.evidence or {}
        unconfirmed = evidence.get("unconfirmed")
        for seen, state in (
            (evidence.get("early_look"), "confirmed"),
            (evidence.get("look"), "pending"),
            (unconfirmed.get("look") if isinstance(unconfirmed, dict) else None, "unconfirmed"),
        ):
            if isinstance(seen, dict) and "minutes" in seen and "at" in seen:
                return int(seen["minutes"]), datetime.fromisoformat(seen["at"]).timestamp(), state
        return None

    @property
    def found_by_look(self) -> bool:
        """Whether the look posted it: the look recorded the window, and the post is the
        opening one or came before the window closed (a look's escalation). A look that found
        it below the alert severity, escalated by the closed window, is the closed window's."""
        look = self.look
        if look is None:
            return False
        return self.posted is None or self.post_change == "opened" or self.posted < self.close

    @property
    def close(self) -> float:
        return self.window + WINDOW

    @property
    def found_by(self) -> str:
        if self.anomaly is None:
            return "-"
        look = self.look
        if look is not None and self.found_by_look:
            return f"look at minute {look[0]} ({look[2]})"
        if look is not None:
            return f"closed window (escalating look at minute {look[0]})"
        return "closed window"


def clock(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def secs(a: float | None, b: float | None) -> str:
    """b - a in whole seconds, '-' if either is unknown."""
    return "-" if a is None or b is None else f"{b - a:.0f}"


# --- Dagster's GraphQL API ---------------------------------------------------------------------
def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    url = f"http://{HOST}:{port}/graphql"
    answer = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"Dagster GraphQL: {body['errors']}")
    return dict(body["data"])


def dagster_runs(port: int, since: float) -> list[dict]:
    query = f"{{ runsOrError(filter: {{createdAfter: {since}}}, limit: 1000) {{ __typename"
    query += " ... on Runs { results { runId jobName status creationTime startTime endTime } } } }"
    return list(graphql(port, query)["runsOrError"].get("results", []))


def during(runs: list[dict], job: str, moment: float | None, slack: float = 1.0) -> dict | None:
    """The run of `job` that was going at `moment` (give or take `slack` seconds: run times are
    the run's events', a post can come just before its end is recorded)."""
    if moment is None or math.isnan(moment):
        return None
    for run in runs:
        end = (run["endTime"] or math.inf) + slack
        if run["jobName"] == job and run["startTime"] and run["startTime"] - slack <= moment <= end:
            return run
    return None


# --- the spikes --------------------------------------------------------------------------------
def report(spikes: list[Spike]) -> None:
    rows = [["spike", "position", "window (UTC)", "last event", "found by", "posted", "severity",
             "s to Slack"]]  # fmt: skip
    for n, spike in enumerate(spikes, 1):
        seconds = spike.seconds
        rows.append([str(n), spike.position, clock(spike.window), clock(spike.last_event),
                     spike.found_by, clock(spike.posted), spike.severity,
                     "-" if seconds is None else f"{seconds:.1f}"])  # fmt: skip
    table(rows)
    for n, spike in enumerate(spikes, 1):
        if spike.note:
            print(f"spike {n}: {spike.note}")
    print("(found by: the early look at minute m of the open window that recorded the spike's")
    print(" window (its evidence: confirmed or unconfirmed once the window closed, pending if")
    print(" not yet), or the closed window's rules run; s to Slack: last event's 2xx -> the")
    print(" top-level post, negative when a look found it before its last event)\n")


def summary(spikes: list[Spike]) -> None:
    measured = sorted(s for spike in spikes if (s := spike.seconds) is not None)
    rows = [["spikes posted", "by a look", "min s", f"median s (<= {MEDIAN_TARGET:.0f})",
             f"p95 s (<= {P95_TARGET:.0f})", "targets"]]  # fmt: skip
    looks = sum(1 for s in spikes if s.posted is not None and s.found_by_look)
    if not measured:
        table([*rows, [f"0 of {len(spikes)}", "0", "-", "-", "-", "not measured"]])
        return
    p95 = measured[max(0, math.ceil(0.95 * len(measured)) - 1)]
    median = statistics.median(measured)
    every = len(measured) == len(spikes)
    met = median <= MEDIAN_TARGET and p95 <= P95_TARGET and every
    verdict = "met" if met else "missed" if every else "missed (spikes not posted)"
    table([*rows, [f"{len(measured)} of {len(spikes)}", str(looks), f"{measured[0]:.1f}",
                   f"{median:.1f}", f"{p95:.1f}", verdict]])  # fmt: skip
    if len(measured) < 20:
        print(f"(p95 of {len(measured)} spike(s) is their maximum; run more --spikes for a real"
              " one)\n")  # fmt: skip


def breakdown(spikes: list[Spike], runs: list[dict]) -> None:
    """Where each spike's seconds went, by the path that found it."""
    looks = [["spike", "found by", "to minute m", "to the look", "look to post", "total"]]
    closed = [["spike", "to window close", "to rules run", "its launch", "run to post",
               "posted by", "total"]]  # fmt: skip
    for n, spike in enumerate(spikes, 1):
        name = f"{n} {spike.position}"
        total = "-" if spike.seconds is None else f"{spike.seconds:.0f}"
        if spike.anomaly is None:
            continue
        look = spike.look
        if look is not None and spike.found_by_look:
            minute = spike.window + 60 * look[0]
            looks.append([name, f"look at minute {look[0]}", secs(spike.last_event, minute),
                          secs(minute, look[1]), secs(look[1], spike.posted), total])  # fmt: skip
            continue
        rules = during(runs, "rules_job", spike.posted) or during(runs, "rules_job", spike.detected)
        alerts = during(runs, "alerts_job", spike.posted)
        by = "rules run" if rules and during([rules], "rules_job", spike.posted) else (
            "alerts run" if alerts else "-")  # fmt: skip
        if rules is None:
            closed.append([name, secs(spike.last_event, spike.close), "-", "-", "-", by, total])
            continue
        closed.append([name, secs(spike.last_event, spike.close),
                       secs(spike.close, rules["creationTime"]),
                       secs(rules["creationTime"], rules["startTime"]),
                       secs(rules["startTime"], spike.posted), by, total])  # fmt: skip
    if len(looks) > 1:
        table(looks)
        print("(seconds: last event -> minute m of its window begins (m = the whole minutes the")
        print(" look saw; negative: the look saw only part of the spike) -> the look (its")
        print(" evidence's `at`: the sensor tick's database clock, the anomaly's detected_at when")
        print(" it opened it) -> the Slack post (in the same tick: deliver_found))\n")
    if len(closed) > 1:
        table(closed)
        print("(seconds: last event -> window close -> rules run created (schedule tick) ->")
        print(" started (queue, worker start) -> the Slack post; posted by: the rules run at once")
        print(" (deliver_found after its commit) or the alerts run (the backstop); '-': unknown)\n")


def duplicates(
    slack_posts: list[dict], incidents: dict[int, list[int]], after: list[int], began: float
) -> int:
    """Print and count duplicate alerts: a second top-level post for one anomaly, a second
    incident opened for one spike (`incidents`: spike number -> its rule's incidents opened in
    its window; `after`: those opened in the window after the last spike)."""
    per_anomaly: Counter[str] = Counter()
    for message in slack_posts:
        if not message["ts"] or float(message["ts"]) < began:
            continue
        payload = (message["metadata"] or {}).get("event_payload") or {}
        if payload.get("anomaly_id") is not None:
            per_anomaly[str(payload["anomaly_id"])] += 1
    twice = {a: c for a, c in per_anomaly.items() if c > 1}
    extra_incidents = {n: ids for n, ids in incidents.items() if len(ids) > 1}
    count = sum(c - 1 for c in twice.values()) + sum(len(i) - 1 for i in extra_incidents.values())
    count += len(after)
    print(f"duplicate alerts: {count} (top-level posts: {sum(per_anomaly.values())} for"
          f" {len(per_anomaly)} anomalies", end="")  # fmt: skip
    print(f"; more than one for {twice})" if twice else "; one each)")
    for n, ids in extra_incidents.items():
        print(f"  spike {n}: {len(ids)} incidents opened in its window: {ids}")
    if after:
        print(f"  after the last spike, its rule opened {after} in the next window")
    print()
    return count


# --- CPU --------------------------------------------------------------------------------------
# The code server `up` starts for the webserver and the daemon: sensors are evaluated there,
# and the run workers are its children.
PARTS = ["api", "dagster-webserver", "dagster-daemon", "its children", "code-server", "postgres",
         "up"]  # fmt: skip


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


def cpu_shares(before: dict, after: dict, seconds: float) -> dict[str, float | None]:
    """% of one core each part used between two snapshots; 'stack' their sum."""
    used = {k: None if before.get(k) is None or after.get(k) is None else after[k] - before[k]
            for k in [*PARTS, "machine"]}  # fmt: skip
    share: dict[str, float | None] = {
        k: None if v is None else 100 * v / seconds for k, v in used.items()
    }
    share["stack"] = sum(v or 0.0 for k, v in share.items() if k in PARTS)
    return share


@dataclass
class Phase:
    label: str
    seconds: float
    share: dict[str, float | None]
    runs: int  # Dagster runs created during it
    ticks: str  # the open-window sensor's ticks during it: "ticks/looks"
    note: str = ""
    start: float = 0.0  # epoch seconds
    look_seconds: list[float] = field(default_factory=list)  # each look's tick, wall time


def cpu_row(phase: Phase) -> list[str]:
    cells = ["-" if (v := phase.share.get(k)) is None else f"{v:.1f}"
             for k in [*PARTS, "stack", "machine"]]  # fmt: skip
    return [phase.label, f"{phase.seconds:.0f}", *cells, str(phase.runs), phase.ticks]


def difference_row(label: str, on: Phase | None, off: Phase | None) -> list[str]:
    if on is None or off is None:
        return [label, "-", *["-"] * (len(PARTS) + 2), "-", "-"]
    cells = []
    for k in [*PARTS, "stack", "machine"]:
        a, b = on.share.get(k), off.share.get(k)
        cells.append("-" if a is None or b is None else f"{a - b:+.1f}")
    return [label, "", *cells, "", ""]


def cpu_table(phases: list[Phase]) -> None:
    by = {p.label: p for p in phases}
    rows = [["phase", "seconds", *PARTS, "stack", "machine", "runs", "ticks/looks"]]
    rows += [cpu_row(p) for p in phases]
    rows.append(difference_row("idle: on - off", by.get("idle, sensor on"),
                               by.get("idle, sensor off")))  # fmt: skip
    rows.append(difference_row("300/s: on - off", by.get("300/s, sensor on"),
                               by.get("300/s, sensor off")))  # fmt: skip
    table(rows)
    for p in phases:
        if p.note:
            print(f"{p.label}: {p.note}")
    idle = by.get("idle, sensor on")
    if idle is not None:
        stack = idle.share["stack"] or 0.0
        verdict = "met" if stack < IDLE_TARGET else "missed"
        print(f"idle stack with the sensor on: {stack:.1f}% of one core (target < {IDLE_TARGET:g}%:"
              f" {verdict}; runs excluded, see below)")  # fmt: skip
    took = [s for p in phases for s in p.look_seconds]
    if took:
        mean = statistics.mean(took)
        print(f"a look's tick: {mean:.2f} s of wall time on average ({len(took)} looks, at most"
              f" {max(took):.2f} s), one a minute: at most ~{100 * mean / 60:.1f}% of one core if"
              " all of it were CPU (the code server and PostgreSQL take turns in it)")  # fmt: skip
    print("(CPU in % of one core, each process with its descendants (the webserver's code server,")
    print(" PostgreSQL's backends); the daemon apart from its children (its code server, where")
    print(" sensors are evaluated, and the run workers); `up` itself only; stack: their sum;")
    print(" machine: every process on this machine, the benchmark's sender and anything else")
    print(" running included. The on/off phases lie within minutes 1-4 of a window, the minutes")
    print(" the sensor looks, and start with no Dagster run going: the 5-minute rules runs are in")
    print(" the first row only; with the sensor on, a phase starts min(30, seconds/2) s before its")
    print(" next tick; runs: created during the phase; ticks/looks: open_window_sensor's ticks")
    print(" during the phase, and those that looked (not skipped); 'on - off' is within the noise")
    print(" of other sensors and processes unless a phase holds several looks)\n")
