"""Latency: from a payment-failure spike's last event to its Slack post, on `sentinelops up`.

    uv run python benchmarks/latency.py                      # 3 spikes, then CPU: ~30-35 min
    uv run python benchmarks/latency.py --spikes 6 --cpu-seconds 20   # more spikes, less CPU
    uv run python benchmarks/latency.py --spikes 1 --warmup-minutes 0 --idle-seconds 30
    uv run python benchmarks/latency.py --database-url postgresql://…/postgres

Starts `python -m sentinelops.cli up` as `make run` does (own process group, free ports, a fresh
temporary SENTINELOPS_HOME, the embedded PostgreSQL there, or a scratch database on the server of
--database-url), with Slack in app mode pointed at a local fake of Slack's Web API
(tests/slack_api.py), the packaged rules without payment_failure_spike's 2-hour window (see
spike_rules), and the generated webhook secret and API token read from that home. It
sends steady signed payments built from the demo's event templates (--rate a minute, one in 20
declined: the rule's default usual rate of 5%, which a new account is judged against until it has
a day of history), for at least --warmup-minutes and up to a window boundary; then, in each of
the next --spikes 5-minute windows, a failure spike on top (26 of 40 payments declined within one
minute) placed at the window's start, middle and end in turn. For each spike it records the time
from its last event's 2xx to the top-level chat.postMessage of its incident in the fake Slack
(matched by the message metadata's anomaly id), then, once the spike is over, resolves the
incident through the API, so the next spike opens one of its own.

It prints, per spike, what found it: an early look at minute m of the still-open window (the
`open_window_sensor`, from the window's evidence: `look`, then `early_look` once the closed
window confirmed it, or `unconfirmed`), or the closed window's rules run; and where the seconds
went on that path (last event -> minute m -> the look -> the post; or last event -> window close
-> rules run created -> started -> the post, by the rules run itself or the alerts run). Then
min / median / p95 against the targets (median <= 75 s, p95 <= 120 s), and duplicate alerts
(a second top-level post for one anomaly, a second incident for one spike).

CPU: after the spikes and --idle-seconds of quiet, four phases of --cpu-seconds each, every one
within minutes 1-4 of a window (the minutes the sensor looks), started with no Dagster run going
and, with the sensor on, placed so its ticks (one a minute) fall whole inside (one in 60 s):
idle with open_window_sensor running, idle with it stopped, 300 events/s (the soak
benchmark's sender, benchmarks/soak.py) with it running, and stopped. The sensor is stopped and
started as a user would, through the Dagster webserver's GraphQL API (stopSensor/startSensor,
what the UI's toggle calls). One table: each process's CPU (with its descendants, the database
server included) in % of one core, the stack's total, and on minus off at idle and under load;
the first row is the whole spike phase, the 5-minute runs included. Nothing is asserted.
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
import uvloop
from bench_support import HOST, ROOT, WEBHOOK
from latency_report import (
    Phase,
    Spike,
    breakdown,
    clock,
    cpu_shares,
    cpu_snapshot,
    cpu_table,
    dagster_runs,
    duplicates,
    graphql,
    report,
    summary,
)
from soak import soak, stack_pids, stop_stack, wait_up

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
def spike_rules(home: Path) -> str:
    """The packaged rules without payment_failure_spike's 2-hour window. With it, a spike keeps
    the 2-hour window breaching for the 30 minutes its 30-minute sum remembers it, so once the
    benchmark resolves one spike's incident, the next look opens another before the next spike
    even begins (as it should: the condition still holds), and no spike after the first could
    be timed on its own. Judged over 5 and 30 minutes, each spike's incident ends with it."""
    text = resources.files("sentinelops_pipelines.rules").joinpath("rules.toml").read_text()
    single = "window_minutes = [5, 30, 120]"
    assert text.count(single) == 1, "rules.toml changed: update spike_rules()"
    path = home / "latency-rules.toml"
    path.write_text(text.replace(single, "window_minutes = [5, 30]"))
    return str(path)


def launch_stack(
    args: argparse.Namespace, home: Path, db_url: str | None, slack_url: str
) -> subprocess.Popen:
    """`sentinelops up` as `make run` starts it, on defaults: none of the caller's SentinelOps,
    Slack, Stripe, OpenAI or Dagster settings reach it (no real Slack, no real Stripe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV_PREFIXES)}
    env.pop("DATABASE_URL", None)
    env.update(SENTINELOPS_HOME=str(home), SLACK_API_URL=slack_url, SLACK_CHANNEL_ID=CHANNEL)
    env["SLACK_BOT_TOKEN"] = "xoxb-latency-benchmark"
    env["SENTINELOPS_RULES_FILE"] = spike_rules(home)
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
SELECT a.id, a.severity, extract(epoch FROM a.detected_at)::float8
  FROM anomaly_windows w JOIN anomalies a ON a.id = w.anomaly_id
 WHERE w.rule = %s AND w.window_start = to_timestamp(%s)
"""
# The spike window's verdict as it ends up: who found it (an early look or the closed window).
SPIKE_EVIDENCE = """
SELECT w.evidence FROM anomaly_windows w
 WHERE w.rule = %s AND w.window_start = to_timestamp(%s)
"""
# The rule's incidents opened in a range of windows: one per spike expected.
OPENED_IN = """
SELECT id FROM anomalies
 WHERE rule = %s AND window_start >= to_timestamp(%s) AND window_start < to_timestamp(%s)
 ORDER BY id
"""


def top_post(slack: FakeSlack, anomaly_id: int) -> dict | None:
    """The first top-level message of this incident (its ts is the fake's clock): the one
    that opened it, or an escalation's when its opening was below the alert severity."""
    for message in slack.top_level():
        payload = (message["metadata"] or {}).get("event_payload") or {}
        if str(payload.get("anomaly_id")) == str(anomaly_id):
            return message
    return None


def follow(spike: Spike, conn: psycopg.Connection, slack: FakeSlack, api: str, token: str,
           earlier: set[int], timeout: float) -> None:  # fmt: skip
    """Wait for the spike's incident to be posted, then, once its last payment is sent,
    resolve it, so that the next spike opens its own (a breach within the rule's quiet gap of
    an open incident extends it). An early look may post it before the spike is over."""
    deadline = spike.window + WINDOW + timeout
    over = spike.window + POSITIONS[spike.position] + SPIKE_SECONDS + 2
    while time.time() < deadline:
        row = conn.execute(SPIKE_ANOMALY, (RULE, spike.window)).fetchone()
        if row is not None:
            spike.anomaly, spike.severity, spike.detected = row
            if spike.anomaly in earlier:
                spike.note = f"extended incident {spike.anomaly}, not yet resolved: no post"
                return
            if spike.posted is None and (message := top_post(slack, spike.anomaly)) is not None:
                spike.posted = float(message["ts"])
                payload = (message["metadata"] or {}).get("event_payload") or {}
                spike.post_change = payload.get("change")
            if spike.posted is not None and time.time() >= over:
                patch = {"status": "resolved", "note": "latency benchmark: next spike"}
                auth = {"Authorization": f"Bearer {token}"}
                httpx.patch(f"{api}/api/v1/anomalies/{spike.anomaly}", json=patch, headers=auth)
                return
        time.sleep(0.25)
    if spike.posted is not None and spike.posted < spike.begins:
        spike.note = (f"incident {spike.anomaly} was posted before the spike began (an earlier"
                      " breach still going): not counted")  # fmt: skip
    if spike.posted is None:
        spike.note = "no anomaly in time" if spike.anomaly is None else "not posted in time"
    if spike.severity == "low":
        spike.note += " (severity low: posted from medium)"


# --- the open-window sensor, switched as a user would: the webserver's GraphQL API -------------
SENSOR = "open_window_sensor"
LOCATE = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
  name location { name } sensors { name sensorState { id status } } } } } }"""
STOP = """mutation($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } }
  ... on PythonError { message } ... on UnauthorizedError { message } } }"""
START = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { status } } ... on PythonError { message }
  ... on UnauthorizedError { message } ... on SensorNotFoundError { message } } }"""
TICKS = """query($s: SensorSelector!, $after: Float, $before: Float) {
  sensorOrError(sensorSelector: $s) { __typename ... on Sensor { sensorState {
    ticks(afterTimestamp: $after, beforeTimestamp: $before, limit: 200) {
      timestamp endTimestamp status skipReason } } } } }"""


NOT_LOOKED = ("already looked at", "nothing to look at")  # open_window_sensor's skip reasons


class SensorSwitch:
    """open_window_sensor's state in the stack's Dagster (the UI's toggle, by GraphQL)."""

    def __init__(self, port: int) -> None:
        self.port = port
        for repo in graphql(port, LOCATE)["repositoriesOrError"].get("nodes", []):
            for sensor in repo["sensors"]:
                if sensor["name"] == SENSOR:
                    location = repo["location"]["name"]
                    self.selector = {"repositoryName": repo["name"], "sensorName": SENSOR,
                                     "repositoryLocationName": location}  # fmt: skip
                    self.state_id = sensor["sensorState"]["id"]
                    return
        raise RuntimeError(f"{SENSOR} is not in the stack's Dagster workspace")

    def set(self, running: bool) -> None:
        if running:
            answer = graphql(self.port, START, {"s": self.selector})["startSensor"]
            status = (answer.get("sensorState") or {}).get("status")
        else:
            answer = graphql(self.port, STOP, {"id": self.state_id})["stopSensor"]
            status = (answer.get("instigationState") or {}).get("status")
        if status != ("RUNNING" if running else "STOPPED"):
            raise RuntimeError(f"{SENSOR}: {'start' if running else 'stop'} answered {answer}")

    def tick_list(self, after: float, before: float) -> list[dict]:
        variables = {"s": self.selector, "after": after, "before": before}
        answer = graphql(self.port, TICKS, variables)["sensorOrError"]
        return list((answer.get("sensorState") or {}).get("ticks") or [])

    def ticks(self, after: float, before: float) -> tuple[str, str, list[float]]:
        """('ticks/looks', a note, each look's seconds) between the two moments: every tick, and
        those that looked
        (a look reports an observation and no run: Dagster records it as skipped, "Sensor
        function returned an empty result"; the sensor's own skip reasons say it did not look)."""
        ticks = self.tick_list(after, before)
        looks = [t for t in ticks if t["status"] != "FAILURE"
                 and not (t["skipReason"] or "").startswith(NOT_LOOKED)]  # fmt: skip
        took = [t["endTimestamp"] - t["timestamp"] for t in looks if t["endTimestamp"]]
        failed = sum(t["status"] == "FAILURE" for t in ticks)
        note = (
            f"looks took {', '.join(f'{s:.1f}' for s in took)} s (tick wall time)" if took else ""
        )
        if failed:
            note += f"; {failed} tick(s) failed"
        return f"{len(ticks)}/{len(looks)}", note, took

    def last_tick(self, after: float) -> float | None:
        ticks = self.tick_list(after, time.time() + 60)
        return max((t["timestamp"] for t in ticks), default=None)


# --- CPU phases --------------------------------------------------------------------------------
GOING = "{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]})"
GOING += " { __typename ... on Runs { results { runId } } } }"
LOOK_EVERY = 60  # open_window.LOOK_EVERY_SECONDS (not imported: it would load Dagster here)
FIRST_LOOK, LAST_LOOK = 60, WINDOW - 2  # the sensor looks in minutes 1-4 of a window


def in_minutes_1_to_4(start: float, seconds: float) -> bool:
    window = start - start % WINDOW
    return window + FIRST_LOOK <= start and start + seconds <= window + LAST_LOOK


def runs_going(port: int) -> bool:
    return bool(graphql(port, GOING)["runsOrError"].get("results"))


def quiet_slot(port: int, seconds: float) -> None:
    """Wait for `seconds` within minutes 1-4 of one window, starting with no Dagster run
    going (a rules run, launched at each boundary, takes tens of seconds of CPU)."""
    while True:
        now = time.time()
        start = now - now % WINDOW
        if now - start < FIRST_LOOK:
            time.sleep(start + FIRST_LOOK - now)
        elif not in_minutes_1_to_4(now, seconds):
            time.sleep(start + WINDOW + FIRST_LOOK - now)
        elif runs_going(port):
            time.sleep(2)
        else:
            return


def look_slot(port: int, seconds: float, switch: SensorSwitch, since: float) -> None:
    """As quiet_slot, with the sensor's ticks (every LOOK_EVERY s) where the phase has them
    whole: its first tick min(30, seconds / 2) s after it starts, so a 60 s phase holds one
    look (a phase of any length and phase against the ticks would hold 0, 1 or 2). Goes by
    the ticks after `since` (when the sensor was last switched: a start ticks at once)."""
    lead = LOOK_EVERY - min(30.0, seconds / 2)
    while True:
        last = switch.last_tick(since)
        if last is None:  # no tick yet: the sensor was just started
            if time.time() > since + 3 * LOOK_EVERY:
                raise RuntimeError(f"{SENSOR} has not ticked for {3 * LOOK_EVERY} s")
            time.sleep(2)
            continue
        start = last + lead
        while start < time.time():  # the ticks to come, as the daemon keeps them
            start += LOOK_EVERY
        if not in_minutes_1_to_4(start, seconds):
            time.sleep(max(1.0, start - time.time()))
            continue
        time.sleep(start - time.time())
        if runs_going(port):
            continue
        return


def cpu_phases(args: argparse.Namespace, pids: dict[str, int | None], secret: str,
               switch: SensorSwitch) -> list[Phase]:  # fmt: skip
    phases = []
    for load, running in ((False, True), (False, False), (True, True), (True, False)):
        label = f"{'300/s' if load else 'idle'}, sensor {'on' if running else 'off'}"
        switched = time.time()
        switch.set(running)
        if running:
            look_slot(args.dagster_port, args.cpu_seconds + 1, switch, switched)
        else:
            quiet_slot(args.dagster_port, args.cpu_seconds + 1)
        began, before = time.time(), cpu_snapshot(pids)
        note = ""
        if load:
            tag = f"lat_{int(began)}_{os.getpid()}"
            sent = uvloop.run(soak(args.api_port, secret, LOAD_RATE, args.cpu_seconds, tag))
            note = f"{len(sent.acked)} events acknowledged ({len(sent.acked) / sent.seconds:.0f}/s)"
            note += f", {sent.failed} given up"
        else:
            time.sleep(args.cpu_seconds)
        ended, after = time.time(), cpu_snapshot(pids)
        created = [r["creationTime"] for r in dagster_runs(args.dagster_port, began - 1)]
        runs = sum(began <= c < ended for c in created)
        ticks, looked, took = switch.ticks(began, ended)
        note = "; ".join(n for n in (note, looked) if n)
        phase = Phase(label, ended - began, cpu_shares(before, after, ended - began), runs,
                      ticks, note, start=began, look_seconds=took)  # fmt: skip
        print(f"{label}: {clock(began)} to {clock(ended)}, stack"
              f" {phase.share['stack'] or 0:.1f}% of one core {note}", flush=True)  # fmt: skip
        phases.append(phase)
    switch.set(True)  # as the stack defines it
    return phases


LOAD_RATE = 300.0  # events/s, issue 18


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--spikes", type=int, default=3, help="spikes, one per window, start/middle/end in turn")
    add("--warmup-minutes", type=float, default=1.0,
        help="steady traffic before the first spike's window, at least (default 1)")  # fmt: skip
    add("--rate", type=float, default=30.0, help="steady payments a minute (default 30)")
    add("--idle-seconds", type=float, default=60.0,
        help="quiet after the spikes, before the CPU phases (default 60)")  # fmt: skip
    add("--cpu-seconds", type=float, default=60.0,
        help="each CPU phase: idle / 300 events/s, sensor on / off (default 60)")  # fmt: skip
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
    if not 10 <= args.cpu_seconds <= LAST_LOOK - FIRST_LOOK - 10:
        parser.error(f"keep --cpu-seconds in [10, {LAST_LOOK - FIRST_LOOK - 10}]: a phase lies"
                     " within minutes 1-4 of one window")  # fmt: skip
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
    switch = SensorSwitch(args.dagster_port)

    api, began = f"http://{HOST}:{args.api_port}", time.time()
    first = math.ceil((began + args.warmup_minutes * 60) / WINDOW) * WINDOW
    order = list(POSITIONS)
    spikes = [Spike(order[k % len(order)], first + k * WINDOW) for k in range(args.spikes)]
    for spike in spikes:
        spike.begins = spike.window + POSITIONS[spike.position]
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
                  f" {clock(spike.last_event)}, posted {clock(spike.posted)}"
                  f" ({spike.post_change or '-'}): {took} {spike.note}", flush=True)  # fmt: skip
    traffic.stop()
    busy_end, cpu_busy = time.time(), cpu_snapshot(pids)
    print(f"traffic stopped ({traffic.stored} events stored, {traffic.refused} refused);"
          f" quiet for {args.idle_seconds:.0f} s, then the CPU phases", flush=True)  # fmt: skip
    time.sleep(args.idle_seconds)
    phases = cpu_phases(args, pids, secret, switch)
    load_from = min(p.start for p in phases if p.label.startswith("300/s"))
    runs = dagster_runs(args.dagster_port, began - 120)

    last = spikes[-1]
    if time.time() < last.close + 30:  # the closed window's verdict on a look's breach
        time.sleep(last.close + 30 - time.time())
        runs = dagster_runs(args.dagster_port, began - 120)
    with psycopg.connect(db, autocommit=True) as conn:
        for spike in spikes:
            row = conn.execute(SPIKE_EVIDENCE, (RULE, spike.window)).fetchone()
            spike.evidence = row[0] if row else None
        incidents = {
            n: [r[0] for r in conn.execute(OPENED_IN, (RULE, s.window, s.close)).fetchall()]
            for n, s in enumerate(spikes, 1)
        }
        after_until = min(last.close + WINDOW, load_from - load_from % WINDOW)
        after = [r[0] for r in conn.execute(OPENED_IN, (RULE, last.close, after_until))]

    print()
    report(spikes)
    summary(spikes)
    breakdown(spikes, runs)
    duplicates(slack.top_level(), incidents, after, began)
    created = [run["creationTime"] for run in runs]
    ticks, looked, took = switch.ticks(began, busy_end)
    first_row = Phase("spikes, sensor on", busy_end - began,
                      cpu_shares(cpu_start, cpu_busy, busy_end - began),
                      sum(began <= c < busy_end for c in created), ticks,
                      "; ".join(n for n in ("traffic and spikes, runs included", looked) if n),
                      start=began, look_seconds=took)  # fmt: skip
    cpu_table([first_row, *phases])


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
