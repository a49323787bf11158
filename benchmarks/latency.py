"""Latency: from a payment-failure spike's last event to its Slack post, on `sentinelops up`.

    uv run python benchmarks/latency.py                      # 3 spikes: 20 to 25 minutes
    uv run python benchmarks/latency.py --spikes 1 --warmup-minutes 0 --idle-seconds 30
    uv run python benchmarks/latency.py --database-url postgresql://…/postgres

Starts `python -m sentinelops.cli up` as `make run` does (own process group, free ports, a fresh
temporary SENTINELOPS_HOME, the embedded PostgreSQL there, or a scratch database on the server of
--database-url), with Slack in app mode pointed at a local fake of Slack's Web API
(tests/slack_api.py) and the generated webhook secret and API token read from that home. It
sends steady signed payments built from the demo's event templates (--rate a minute, one in 20
declined: the rule's default usual rate of 5%, which a new account is judged against until it has
a day of history), for at least --warmup-minutes and up to a window boundary; then, in each of
the next --spikes 5-minute windows, a failure spike on top (26 of 40 payments declined within one
minute) placed at the window's start, middle and end in turn. For each spike it records the time
from its last event's 2xx to the chat.postMessage that opened its incident in the fake Slack
(matched by the message metadata's anomaly id), then resolves the incident through the API, so
the next spike opens one of its own. It prints those seconds with min / median / p95, where they
went (Dagster's run times, from its GraphQL API), and the stack's CPU (its process tree, the
database server included) under the steady traffic and at idle. Nothing is asserted.
Loopback only; everything started is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.slack_api

import bench_support as bench
import httpx
import psycopg
import stripe
from bench_support import HOST, ROOT, WEBHOOK, table
from latency_report import (
    PARTS,
    Spike,
    breakdown,
    clock,
    cpu_row,
    cpu_snapshot,
    dagster_runs,
    report,
)
from soak import stack_pids, stop_stack, wait_up

from sentinelops import embedded
from sentinelops_pipelines.demo.traffic import ACCEPTED, DECLINED
from tests.slack_api import CHANNEL, FakeSlack

WINDOW = 300  # seconds: the rules' 5-minute windows, aligned on the epoch (sentinelops/windows.py)
FAIL_EVERY = 20  # steady traffic: one payment in 20 declined
SPIKE_PAYMENTS, SPIKE_DECLINED, SPIKE_SECONDS = 40, 26, 60
# Where each spike's minute starts in its window: its last event lands ~1, ~3 and ~4.8 min in.
POSITIONS = {"start": 0, "middle": 120, "end": 230}
RULE = "payment_failure_spike"
EVENTS = resources.files("sentinelops_pipelines.demo").joinpath("events")
TEMPLATES = {kind: EVENTS.joinpath(f"{kind}.json").read_text() for kind in DECLINED + ACCEPTED}
STACK_ENV_PREFIXES = ("SENTINELOPS_", "SLACK_", "STRIPE_", "OPENAI_", "DAGSTER_")


def payment_events(run: str, n: int, declined: bool) -> list[dict]:
    """One payment's events (PaymentIntent and charge), created now, test mode, as the demo's."""
    at, pi = int(time.time()), f"pi_lat_{run}_{n}"
    events = []
    for kind in DECLINED if declined else ACCEPTED:
        event = json.loads(TEMPLATES[kind])
        event.update(id=f"evt_lat_{run}_{n}_{kind[0]}", created=at, livemode=False)
        event["request"] = {"id": None, "idempotency_key": None}
        obj = event["data"]["object"]
        obj.update(livemode=False, metadata={"sentinelops_bench": "latency"})
        obj["id"] = pi if kind.startswith("payment_intent") else f"ch_lat_{run}_{n}"
        if kind.startswith("charge"):
            obj["payment_intent"] = pi
        events.append(event)
    return events


def spike_declined(i: int) -> bool:
    """Whether a spike's payment `i` is declined: SPIKE_DECLINED of them, spread evenly."""
    return (i + 1) * SPIKE_DECLINED // SPIKE_PAYMENTS > i * SPIKE_DECLINED // SPIKE_PAYMENTS


class Traffic(threading.Thread):
    """Steady payments at `per_minute` plus each spike's payments at their due times, signed
    as each goes out, one at a time (a payment's two events in order)."""

    def __init__(self, api: str, secret: str, per_minute: float, spikes: list[Spike]) -> None:
        super().__init__(daemon=True)
        self.secret, self.interval, self.spikes = secret, 60 / per_minute, spikes
        self.http = httpx.Client(base_url=api, timeout=10)
        self.halt = threading.Event()
        self.run_tag, self.stored, self.refused = f"{int(time.time())}_{os.getpid()}", 0, 0
        # (due, spike index, declined); steady payments are made as they fall due
        self.due: list[tuple[float, int, bool]] = []
        for index, spike in enumerate(spikes):
            begin = spike.window + POSITIONS[spike.position]
            for i in range(SPIKE_PAYMENTS):
                due = begin + i * SPIKE_SECONDS / SPIKE_PAYMENTS
                self.due.append((due, index, spike_declined(i)))
        heapq.heapify(self.due)

    def run(self) -> None:
        steady, n = time.time(), 0
        while not self.halt.is_set():
            spike_due = self.due[0][0] if self.due else math.inf
            if self.halt.wait(max(0.0, min(steady, spike_due) - time.time())):
                return
            if steady <= spike_due:
                self._send(n, n % FAIL_EVERY == FAIL_EVERY - 1)
                steady += self.interval
            else:
                _, index, declined = heapq.heappop(self.due)
                if self._send(n, declined):
                    self.spikes[index].last_event = time.time()
            n += 1

    def _send(self, n: int, declined: bool) -> bool:
        for event in payment_events(self.run_tag, n, declined):
            body = json.dumps(event)
            header = stripe.WebhookSignature.generate_signature_header(body, self.secret)
            headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
            try:
                answer = self.http.post(WEBHOOK, content=body, headers=headers)
            except httpx.HTTPError:
                answer = None
            if answer is None or not answer.is_success:
                self.refused += 1
                return False
            self.stored += 1
        return True

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)
        self.http.close()


# --- the stack ---------------------------------------------------------------------------------
def launch_stack(
    args: argparse.Namespace, home: Path, db_url: str | None, slack_url: str
) -> subprocess.Popen:
    """`sentinelops up` as `make run` starts it, on defaults: none of the caller's SentinelOps,
    Slack, Stripe, OpenAI or Dagster settings reach it (no real Slack, no real Stripe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV_PREFIXES)}
    env.pop("DATABASE_URL", None)
    env.update(SENTINELOPS_HOME=str(home), SLACK_API_URL=slack_url, SLACK_CHANNEL_ID=CHANNEL)
    env["SLACK_BOT_TOKEN"] = "xoxb-latency-benchmark"
    if db_url:
        env["DATABASE_URL"] = db_url
    cmd = [sys.executable, "-m", "sentinelops.cli", "up", "--api-port", str(args.api_port)]
    cmd += ["--dagster-port", str(args.dagster_port)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def shutdown(
    proc: subprocess.Popen, pids: dict[str, int | None], home: Path, embedded_db: bool
) -> None:
    code = stop_stack(proc, pids)
    if embedded_db and embedded.status(home):
        embedded.stop(home)  # `up` was killed before it stopped its server
    print(f"stack stopped (exit code {code})")


# --- following each spike to Slack -------------------------------------------------------------
SPIKE_ANOMALY = """
SELECT a.id, a.severity FROM anomaly_windows w JOIN anomalies a ON a.id = w.anomaly_id
 WHERE w.rule = %s AND w.window_start = to_timestamp(%s)
"""


def opening_post(slack: FakeSlack, anomaly_id: int) -> float | None:
    """When the message that opened this incident reached Slack (its ts is the fake's clock)."""
    for message in slack.top_level():
        payload = (message["metadata"] or {}).get("event_payload") or {}
        if str(payload.get("anomaly_id")) == str(anomaly_id) and payload.get("change") == "opened":
            return float(message["ts"])
    return None


def follow(spike: Spike, conn: psycopg.Connection, slack: FakeSlack, api: str, token: str,
           earlier: set[int], timeout: float) -> None:  # fmt: skip
    """Wait for the spike's incident to be posted, then resolve it, so that the next spike
    opens its own (a breach within the rule's quiet gap of an open incident extends it)."""
    deadline = spike.window + WINDOW + timeout
    while time.time() < deadline:
        row = conn.execute(SPIKE_ANOMALY, (RULE, spike.window)).fetchone()
        if row is not None:
            spike.anomaly, spike.severity = row
            if spike.anomaly in earlier:
                spike.note = f"extended incident {spike.anomaly}, not yet resolved: no post"
                return
            if (posted := opening_post(slack, spike.anomaly)) is not None:
                spike.posted = posted
                patch = {"status": "resolved", "note": "latency benchmark: next spike"}
                auth = {"Authorization": f"Bearer {token}"}
                httpx.patch(f"{api}/api/v1/anomalies/{spike.anomaly}", json=patch, headers=auth)
                return
        time.sleep(0.25)
    spike.note = "no anomaly in time" if spike.anomaly is None else "not posted in time"
    if spike.severity == "low":
        spike.note += " (severity low: posted from medium)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--spikes", type=int, default=3, help="spikes, one per window, start/middle/end in turn")
    add("--warmup-minutes", type=float, default=1.0,
        help="steady traffic before the first spike's window, at least (default 1)")  # fmt: skip
    add("--rate", type=float, default=30.0, help="steady payments a minute (default 30)")
    add("--idle-seconds", type=float, default=60.0, help="CPU at idle over this long (default 60)")
    add(
        "--timeout-minutes",
        type=float,
        default=10.0,
        help="give up on a spike's post this long after its window closed (default 10)",
    )
    add("--api-port", type=int, default=0, help="default: a free port")
    add("--dagster-port", type=int, default=0, help="default: a free port")
    add("--database-url", help="a server to make a scratch database on (default: embedded)")
    args = parser.parse_args()
    if not (1 <= args.spikes <= 24 and 0 <= args.warmup_minutes <= 120 and 1 <= args.rate <= 600):
        parser.error("keep --spikes in [1, 24], --warmup-minutes in [0, 120], --rate in [1, 600]")
    args.api_port = args.api_port or bench._free_port()
    args.dagster_port = args.dagster_port or bench._free_port()
    return args


def measure(
    args: argparse.Namespace,
    home: Path,
    db_url: str | None,
    slack: FakeSlack,
    proc: subprocess.Popen,
    pids: dict[str, int | None],
    cleanup: ExitStack,
) -> None:
    output: list[str] = []
    wait_up(proc, output)
    db = db_url or embedded.status(home).url()  # type: ignore[union-attr]
    secret = (home / "webhook-secret").read_text().strip()
    token = (home / "api-token").read_text().strip()
    pids.update(stack_pids(proc.pid, home, db, db_url is not None))
    print("up; pids:", ", ".join(f"{k}={v}" for k, v in pids.items()), flush=True)

    api, began = f"http://{HOST}:{args.api_port}", time.time()
    first = math.ceil((began + args.warmup_minutes * 60) / WINDOW) * WINDOW
    order = list(POSITIONS)
    spikes = [Spike(order[k % len(order)], first + k * WINDOW) for k in range(args.spikes)]
    traffic = Traffic(api, secret, args.rate, spikes)
    cpu_start = cpu_snapshot(pids)
    traffic.start()
    cleanup.callback(traffic.stop)
    print(f"steady traffic: {args.rate:g} payments a minute, 1 in {FAIL_EVERY} declined; spikes in"
          f" the windows from {clock(first)} UTC, the last closing at"
          f" {clock(first + args.spikes * WINDOW)}", flush=True)  # fmt: skip
    with psycopg.connect(db, autocommit=True) as conn:
        earlier: set[int] = set()
        for n, spike in enumerate(spikes, 1):
            follow(spike, conn, slack, api, token, earlier, args.timeout_minutes * 60)
            if spike.anomaly is not None:
                earlier.add(spike.anomaly)
            took = "-" if spike.seconds is None else f"{spike.seconds:.1f} s"
            print(f"spike {n} ({spike.position}, window {clock(spike.window)}): last event"
                  f" {clock(spike.last_event)}, posted {clock(spike.posted)}: {took}"
                  f" {spike.note}", flush=True)  # fmt: skip
        detected = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT id, extract(epoch FROM detected_at)::float8 FROM anomalies"
            ).fetchall()
        }
    traffic.stop()
    busy_end, cpu_busy = time.time(), cpu_snapshot(pids)
    print(f"traffic stopped ({traffic.stored} events stored, {traffic.refused} refused);"
          f" idle for {args.idle_seconds:.0f} s", flush=True)  # fmt: skip
    time.sleep(args.idle_seconds)
    idle_end, cpu_idle = time.time(), cpu_snapshot(pids)
    runs = dagster_runs(args.dagster_port, began - 120)

    print()
    report(spikes)
    breakdown(spikes, runs, detected)
    created = [run["creationTime"] for run in runs]
    table([["phase", "seconds", *PARTS, "stack", "machine", "runs"],
           cpu_row("steady traffic", cpu_start, cpu_busy, busy_end - began,
                   sum(began <= c < busy_end for c in created)),
           cpu_row("idle", cpu_busy, cpu_idle, idle_end - busy_end,
                   sum(busy_end <= c < idle_end for c in created))])  # fmt: skip
    print("(CPU in % of one core, each process with its descendants (the webserver's code server,")
    print(" PostgreSQL's backends); the daemon apart from its children (its code server and the")
    print(" run workers); `up` itself only; machine: every process on this machine, the benchmark")
    print(" and anything else running included, out of 100% per core)")
    others = [m for m in slack.top_level() if m["ts"] and float(m["ts"]) >= began]
    print(
        f"top-level Slack posts: {len(others)} (one per spike expected; more are other incidents)"
    )


def main() -> int:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="sentinelops-latency-")).absolute()
    pids: dict[str, int | None] = {}
    try:
        with ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
            slack = cleanup.enter_context(FakeSlack())
            db_url = None
            if args.database_url:
                name = f"sentinelops_latency_{os.getpid()}"
                scratch = bench.scratch_database(
                    args.database_url, name, also_drop=(f"{name}_dagster",)
                )
                db_url = cleanup.enter_context(scratch)
            print(f"starting the stack in {home} (api :{args.api_port}, dagster"
                  f" :{args.dagster_port}, fake Slack {slack.url})", flush=True)  # fmt: skip
            proc = launch_stack(args, home, db_url, slack.url)
            cleanup.callback(shutdown, proc, pids, home, db_url is None)
            measure(args, home, db_url, slack, proc, pids, cleanup)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
