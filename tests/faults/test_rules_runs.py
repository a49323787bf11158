"""Rules runs that overlap or die half-way: the anomalies and Slack alerts a user sees are the
same as after one clean run. Idempotency lives in the database (advisory lock per rule and
scope, a primary key per breached window, a unique key per alert), so these are its tests."""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.slack import SlackResource
from tests import streams
from tests.support import live_rules_file

T0 = datetime(2026, 3, 2, tzinfo=UTC)
LAST = T0 + timedelta(hours=7, minutes=55)
SPIKE = T0 + timedelta(hours=5)
KEY = "%Y-%m-%d-%H:%M"
SPIKE_LOCK = "anomaly:payment_failure_spike:all"  # what anomalies.record() locks per incident
DERIVED = (
    "window_metrics, window_amounts, anomalies, anomaly_windows, anomaly_history, notifications"
)


def run_range(url: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [stripe_events, window_metrics, anomalies],
        resources={"postgres": PostgresResource(database_url=url),
                   "rules": RulesResource(path=live_rules_file()), "slack": SlackResource()},
        tags={"dagster/asset_partition_range_start": T0.strftime(KEY),
              "dagster/asset_partition_range_end": LAST.strftime(KEY)},
        selection=[window_metrics, anomalies],
        raise_on_error=False,
    )  # fmt: skip


def outcome(db: psycopg.Connection) -> dict[str, list[tuple]]:
    """What a user sees: anomalies, the windows behind them, the alerts queued (no ids/times)."""
    return {
        "anomalies": db.execute(
            "SELECT rule, scope, severity, status, window_start, window_end, title,"
            " evidence->>'windows_breached', cleared_at FROM anomalies"
            " ORDER BY rule, scope, window_start"
        ).fetchall(),
        "windows": db.execute(
            "SELECT w.rule, w.scope, w.window_start, w.severity FROM anomaly_windows w"
            " ORDER BY 1, 2, 3"
        ).fetchall(),
        "history": db.execute(
            "SELECT a.rule, h.from_status, h.to_status FROM anomaly_history h"
            " JOIN anomalies a ON a.id = h.anomaly_id ORDER BY 1, 2, 3"
        ).fetchall(),
        "notifications": db.execute(
            "SELECT a.rule, n.kind, n.severity, n.status FROM notifications n"
            " JOIN anomalies a ON a.id = n.anomaly_id ORDER BY 1, 2, 3"
        ).fetchall(),
    }


def waiting_on_advisory_locks(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def traffic(database_url: str) -> None:
    """Eight hours of steady payments, a dispute at 00:31 and a 30-minute failure spike at 05:00:
    two incidents, of which only the spike is severe enough for Slack."""
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    streams.store(database_url, streams.dispute(T0 + timedelta(minutes=31), "fault"))
    streams.store(database_url, streams.failure_spike(SPIKE, minutes=30))


@pytest.fixture
def spike_lock(database_url: str):
    """Holds the spike incident's advisory lock: a rules run that reaches the spike waits inside
    its anomalies transaction (the dispute already written, uncommitted) until it is released."""
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (SPIKE_LOCK,))
        yield lambda: holder.execute(
            "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (SPIKE_LOCK,)
        )


def expected_incidents(result: dict[str, list[tuple]]) -> None:
    """One anomaly per incident, opened once, and one Slack alert: the spike's (and, since it is
    over, one notice that it cleared)."""
    assert [r[0] for r in result["anomalies"]] == ["dispute_spike", "payment_failure_spike"]
    assert [r[3] for r in result["anomalies"]] == ["open", "open"]
    assert result["history"] == [
        ("dispute_spike", None, "open"),
        ("payment_failure_spike", None, "open"),
    ]
    # The spike is over long before 08:00: it cleared, and its alert is followed by one notice.
    assert [r[:2] for r in result["notifications"]] == [
        ("payment_failure_spike", "cleared"),
        ("payment_failure_spike", "opened"),
    ]
    # Every breached window counted once, and the anomaly says how many there were.
    for rule, *_, breached, _cleared in result["anomalies"]:
        assert int(breached) == sum(1 for w in result["windows"] if w[0] == rule)


def test_two_runs_of_the_same_range_at_once_give_what_one_run_gives(
    database_url, db, traffic, spike_lock
):
    results: list[dg.ExecuteInProcessResult] = []
    runs = [threading.Thread(target=lambda: results.append(run_range(database_url)))
            for _ in range(2)]  # fmt: skip
    for run in runs:
        run.start()
    try:
        # Both runs are inside their anomalies transactions at the same moment, at the spike.
        assert wait_for(lambda: waiting_on_advisory_locks(db) == 2, timeout=25)
    finally:
        spike_lock()
        for run in runs:
            run.join(timeout=25)
    assert [r.success for r in results] == [True, True]
    # A second anomaly or alert per incident (the lock or a unique key gone) fails this; so does
    # a rollup race (two runs rewriting window_amounts) failing one of the runs above.
    expected_incidents(outcome(db))


def test_a_run_killed_half_way_then_rerun_leaves_one_anomaly_and_one_alert_per_incident(
    database_url, db, traffic, spike_lock
):
    # A forked child starts in milliseconds (a fresh interpreter spends seconds importing
    # Dagster) and dies by SIGKILL exactly like a killed run worker.
    child = multiprocessing.get_context("fork").Process(
        target=run_range, args=(database_url,), daemon=True
    )
    child.start()
    try:
        # Half-way: window_metrics committed, the dispute anomaly written but not committed.
        assert wait_for(lambda: waiting_on_advisory_locks(db) == 1, timeout=25)
        child.kill()
        child.join(timeout=10)
        assert child.exitcode == -signal.SIGKILL
    finally:
        if child.is_alive():
            child.kill()
        spike_lock()
    assert db.execute("SELECT count(*) FROM window_metrics").fetchone()[0] == 96
    assert db.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 0  # died uncommitted

    assert run_range(database_url).success
    # A duplicate anomaly, window or alert left by the killed run fails this.
    expected_incidents(outcome(db))


def test_a_run_takes_incident_locks_in_one_order_whatever_order_it_meets_them(database_url, db):
    # Time order meets the failure spike (01:00) before the dispute (05:00); the fixed order is
    # by rule. Were a run to hold the spike's lock while it waits for the dispute's, a second
    # run meeting them the other way round would hold the dispute's and wait for the spike's:
    # a deadlock, and PostgreSQL would fail one of the two runs.
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    streams.store(database_url, streams.failure_spike(T0 + timedelta(hours=1), minutes=30))
    streams.store(database_url, streams.dispute(T0 + timedelta(hours=5), "late"))
    results: list[dg.ExecuteInProcessResult] = []
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended('anomaly:dispute_spike:all', 0))")
        run = threading.Thread(target=lambda: results.append(run_range(database_url)))
        run.start()
        try:
            assert wait_for(lambda: waiting_on_advisory_locks(db) == 1, timeout=25)
            held_by_run = db.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> %s"
                " AND a.datname = current_database()",
                (holder.info.backend_pid,),
            ).fetchone()[0]
        finally:
            holder.execute("SELECT pg_advisory_unlock_all()")
            run.join(timeout=25)
    assert held_by_run == 0  # it waits for the dispute's lock holding no other incident's
    assert [r.success for r in results] == [True]
    assert [r[0] for r in outcome(db)["anomalies"]] == ["dispute_spike", "payment_failure_spike"]
