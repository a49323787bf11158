"""The whole stack killed during a failure spike, then started again: nobody touches the UI, and
the spike still opens its anomaly and its alert reaches Slack, and the killed run is not left
STARTED.

It runs `sentinelops up` twice on a home of its own (its own embedded server, whatever the suite
runs on, its Dagster daemon and run workers), about two and a half minutes, so it runs in one of
CI's two passes only: the DATABASE_URL pass, the shorter one (the embedded pass carries the
CLI and terminal tests instead, marked `once`). Without DATABASE_URL it is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest

from sentinelops import embedded
from sentinelops.windows import window_floor
from tests import streams
from tests.faults.test_rules_runs import SPIKE_LOCK, waiting_on_advisory_locks
from tests.local_http import ScriptedServer
from tests.support import SECRET, TOKEN, signed_headers
from tests.test_up import free_port

pytestmark = pytest.mark.skipif(
    "DATABASE_URL" not in os.environ,
    reason="restarts a whole stack on its own embedded server; runs in the DATABASE_URL pass",
)
ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Stack:
    def __init__(self, home: Path, slack_url: str) -> None:
        self.home, self.slack_url = home, slack_url
        self.api_port, self.dagster_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DAGSTER_", "STRIPE_", "SLACK_", "OPENAI_"))
               and k != "DATABASE_URL"}  # its own embedded server, not the suite's  # fmt: skip
        env.update(SENTINELOPS_HOME=str(self.home), STRIPE_WEBHOOK_SECRET=SECRET,
                   SENTINELOPS_API_TOKEN=TOKEN, SLACK_WEBHOOK_URL=self.slack_url,
                   PYTHONPATH=str(ROOT))  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sentinelops.cli", "up", "--api-port", str(self.api_port),
             "--dagster-port", str(self.dagster_port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "SentinelOps is up" in line:
                return
        raise AssertionError("the stack did not come up:\n" + "".join(lines))

    def kill(self) -> None:
        """SIGKILL the stack and everything it started (run workers included), as a crash or
        an OOM kill would; the embedded server is left orphaned, as it would be."""
        assert self.proc is not None
        family = psutil.Process(self.proc.pid).children(recursive=True)
        for proc in [psutil.Process(self.proc.pid), *family]:
            try:
                if "postgres" not in proc.name():
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def post(self, event: dict) -> int:
        body = json.dumps(event).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v1/webhooks/stripe",
            data=body, headers=signed_headers(body), method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)


@pytest.fixture
def slack() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def stack(slack: ScriptedServer) -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="sentinelops-restart-"))
    stack = Stack(home, slack.url)
    try:
        yield stack
    finally:
        stack.stop()
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def test_a_stack_killed_mid_spike_alerts_after_the_restart(stack, slack):
    stack.start()
    url = embedded.status(stack.home).url()  # type: ignore[union-attr]
    dagster_url = embedded.status(stack.home).url("sentinelops_dagster")  # type: ignore[union-attr]
    base = window_floor(datetime.now(UTC))
    # 40 payments in two closed windows, 32 declined; the first window's events arrive before
    # the crash, the second's are Stripe's retries after the restart. 16 of 20 declined is high
    # on its own, so however the restart's runs split the windows, one alert is due (at 12 of
    # 20 the first window alone is medium, and the second's escalation is a second alert).
    first = streams.failure_spike(base - timedelta(minutes=15), minutes=5, attempts=20, failing=16)
    second = streams.failure_spike(base - timedelta(minutes=10), minutes=5, attempts=20, failing=16)

    with psycopg.connect(url, autocommit=True) as db:
        # Holding the incident's lock stops any rules run inside its anomalies step.
        db.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (SPIKE_LOCK,))
        assert {stack.post(e) for e in first} == {200}
        wait_for(lambda: waiting_on_advisory_locks(db), 90, "a rules run to reach the spike")
        stack.kill()
        db.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (SPIKE_LOCK,))
        killed = started_runs(dagster_url)
        assert killed, "the killed run should have been left STARTED"
        assert db.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 0

        stack.start()
        assert {stack.post(e) for e in second} == {200}
        # Nobody touches the UI: the spike's alert reaches Slack, once.
        alert = wait_for(lambda: [r for r in slack.accepted if "Anomaly #" in r.json()["text"]],
                         150, "the spike's alert in Slack")  # fmt: skip
        (anomaly_id, severity), *more = db.execute(
            "SELECT id, severity FROM anomalies WHERE rule = 'payment_failure_spike'"
        ).fetchall()
        assert more == [] and severity == "high"
        assert len(alert) == 1 and f"Anomaly #{anomaly_id} " in alert[0].json()["text"]
    # Not left STARTED (holding a queue slot for good): failed at the restart.
    assert set(killed) <= set(failed_runs(dagster_url)), (killed, started_runs(dagster_url))
    # The Dagster UI shows the loop's lag check, reported between runs by its sensor.
    with psycopg.connect(dagster_url) as conn:
        checks = conn.execute(
            "SELECT count(*) FROM asset_check_executions WHERE check_name = 'evaluation_lag'"
        ).fetchone()
    assert checks[0] >= 1


def _runs(dagster_url: str, status: str) -> list[str]:
    with psycopg.connect(dagster_url) as conn:
        rows = conn.execute("SELECT run_id FROM runs WHERE status = %s", (status,)).fetchall()
    return [r[0] for r in rows]


def started_runs(dagster_url: str) -> list[str]:
    return _runs(dagster_url, "STARTED")


def failed_runs(dagster_url: str) -> list[str]:
    return _runs(dagster_url, "FAILURE")
