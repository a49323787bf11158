"""The contract's command: `group:rules` over a 48-hour range is one run, finds what a stream
injects and stays quiet on the rest. That a second run changes nothing is the same assets run
again: tests/pipelines/test_rule_assets.py (in process, without a second CLI start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from sentinelops_pipelines.schedules import rules_schedule
from tests import streams

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 4, 6, tzinfo=UTC)


def materialize_48_hours(database_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize",
         "-m", "sentinelops_pipelines.definitions", "--select", "group:rules",
         "--partition-range", "2026-04-06-00:00...2026-04-07-23:55"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr + done.stdout


@pytest.mark.once  # the CLI's one run, whatever the server: CI's embedded pass only
def test_a_48_hour_range_is_one_run_that_finds_the_injected_spikes(database_url, db):
    events = streams.normal_traffic(T0, hours=48)
    events += streams.failure_spike(T0 + timedelta(hours=30), minutes=30)
    events += streams.dispute(T0 + timedelta(hours=40, minutes=2), "first")
    events += streams.succeeded_payment(T0 + timedelta(hours=44, minutes=1), "big", 60_000)
    streams.store(database_url, events)

    log = materialize_48_hours(database_url)

    assert log.count("RUN_SUCCESS") == 1
    found = db.execute("SELECT rule, scope, severity FROM anomalies ORDER BY rule").fetchall()
    assert found == [
        ("amount_spike", "usd", "high"),
        ("dispute_spike", "all", "low"),
        ("payment_failure_spike", "all", "high"),
    ]
    windows = db.execute("SELECT count(*) FROM window_metrics").fetchone()[0]
    assert windows == 576


def test_the_schedule_asks_for_the_window_that_just_closed():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 29, 13, 6, tzinfo=UTC)
    )
    request = rules_schedule(context)
    assert request.partition_key == "2026-11-29-13:00"
