"""Catching up on the past: a day of downtime, and a new install whose first reconciliation
imports 30 days of Stripe history. Each is evaluated in one run, and what it finds long after
the fact is recorded and summarised in one message, not posted incident by incident."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import psycopg
import pytest

from sentinelops.postgres import ensure_dagster_database
from sentinelops.slack.delivery import deliver
from sentinelops.windows import window_floor
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams
from tests.local_http import ScriptedServer
from tests.pipelines.test_coverage import closed, key, now_base, requested, run_requested, tick
from tests.pipelines.test_reconciliation import metadata, reconcile
from tests.stripe_server import EventsAPI


def history(start: datetime, spike: datetime) -> list[dict]:
    """A payment every two hours for 30 days, and a 30-minute failure spike."""
    events: list[dict] = []
    for n in range(30 * 12):
        events += streams.succeeded_payment(start + timedelta(hours=2 * n), f"h{n}")
    return events + streams.failure_spike(spike, minutes=30)


@pytest.fixture
def stack_instance(database_url: str) -> Iterator[dg.DagsterInstance]:
    """Dagster with the storage `sentinelops up` gives it (in `<database>_dagster`): a 30-day
    range is 17,280 partition events, which an in-memory instance stores one by one (minutes)
    and this storage in batches (seconds), as in production."""
    custom = {"module": "sentinelops_pipelines.instance", "class": "SentinelOpsDagsterStorage",
              "config": {"postgres_url": ensure_dagster_database(database_url)}}  # fmt: skip
    overrides = {"storage": {"custom": custom}, "telemetry": {"enabled": False}}
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home, overrides) as i:
        yield i


def test_thirty_days_of_imported_history_are_evaluated_once_and_summarised(
    database_url, db, stack_instance
):
    base = now_base()
    start = base - timedelta(days=29, hours=23)
    events = history(start, spike=base - timedelta(days=10))
    with EventsAPI(events=events).serve() as url:
        imported = reconcile(database_url, url, page_size=100)
    assert imported.success
    assert metadata(imported)["history_imported"] == len(events)
    assert db.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 0  # no gap for history

    result = tick(database_url)
    last_closed = now_base() - timedelta(minutes=5)
    assert requested(result) == [(key(window_floor(start)), key(last_closed))]
    run_requested(database_url, result, stack_instance)

    windows = int((last_closed - window_floor(start)) / timedelta(minutes=5)) + 1
    assert db.execute("SELECT count(*) FROM window_metrics").fetchone()[0] == windows
    with psycopg.connect(database_url) as conn:
        (newest,) = metrics_sql.load_windows(conn, last_closed, last_closed + timedelta(minutes=5))
    # The baseline of the newest window is the imported month (less the spike's payments).
    assert newest.windows_30d == windows - 1
    assert newest.history_30d["payment_attempts"] >= 30 * 12 - 1
    assert requested(tick(database_url)) == []

    spikes = db.execute(
        "SELECT found_late FROM anomalies WHERE rule = 'payment_failure_spike'"
    ).fetchall()
    assert spikes == [(True,)]
    # One catch-up message for the run; nothing from ten days ago is posted on its own.
    kinds = db.execute("SELECT kind FROM notifications").fetchall()
    assert kinds == [("catch_up",)]


def test_a_day_down_is_one_run_and_old_incidents_are_one_message(database_url, db):
    base = now_base()
    day = base - timedelta(hours=26)
    streams.store(database_url, streams.normal_traffic(day, hours=26))
    old_spike, new_spike = base - timedelta(hours=20), base - timedelta(minutes=40)
    streams.store(database_url, streams.failure_spike(old_spike, minutes=30))
    streams.store(database_url, streams.failure_spike(new_spike, minutes=30))

    result = tick(database_url)
    assert requested(result) == [(key(day), closed())]
    run_requested(database_url, result)

    found = db.execute(
        "SELECT window_start, found_late FROM anomalies WHERE rule = 'payment_failure_spike'"
        " ORDER BY window_start"
    ).fetchall()
    assert [(start >= new_spike, late) for start, late in found] == [
        (False, True),  # 20 hours ago: recorded and marked, not news
        (True, False),  # still going on 40 minutes ago: alerted as usual
    ]
    with ScriptedServer() as slack:
        with psycopg.connect(database_url, autocommit=True) as conn:
            deliver(
                conn, SlackResource(webhook_url=slack.url, retry_backoff_seconds=0).destination()
            )
        texts = [r.json()["text"] for r in slack.accepted]
    assert len(texts) == 2, texts
    catch_up = next(t for t in texts if t.startswith("Catch-up"))
    assert "1 past incident found late" in catch_up
    assert any("Anomaly #" in t and "opened" in t for t in texts)
    # Running the same range again finds nothing new and queues nothing.
    run_requested(database_url, result)
    assert db.execute("SELECT count(*) FROM notifications").fetchone()[0] == 2
