"""Coverage: every closed window is evaluated with all its events, whatever the loop missed.

The data is laid out relative to the real clock, as the coverage sensor reads it: windows closed
minutes or hours ago, not a fixed past day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from sentinelops.windows import window_floor
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.sensors import coverage_sensor, plan_range
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams

KEY = "%Y-%m-%d-%H:%M"
# For the pure planning cases: any window start will do.
ANCHOR = window_floor(datetime.now(UTC))


def key(moment: datetime) -> str:
    return moment.strftime(KEY)


def now_base() -> datetime:
    """The open window's start: every window before it is closed."""
    return window_floor(datetime.now(UTC))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def closed() -> str:
    """The key of the last closed window, read right after a tick (a range run ends there)."""
    return key(now_base() - timedelta(minutes=5))


def run(
    url: str, start: str, end: str, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    """One range run of the rules, as a schedule tick, a backfill or the sensor launches it."""
    return dg.materialize(
        [stripe_events, window_metrics, anomalies],
        resources={"postgres": PostgresResource(database_url=url), "rules": RulesResource(),
                   "slack": SlackResource()},
        tags={"dagster/asset_partition_range_start": start,
              "dagster/asset_partition_range_end": end},
        selection=[window_metrics, anomalies],
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )  # fmt: skip


def tick(url: str, instance: dg.DagsterInstance | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(),
        resources={"postgres": PostgresResource(database_url=url)},
    )
    result = coverage_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in result.run_requests or []
    ]


def run_requested(
    url: str, result: dg.SensorResult, instance: dg.DagsterInstance | None = None
) -> None:
    ((start, end),) = requested(result)
    assert run(url, start, end, instance).success


class TestCatchUp:
    def test_missed_ticks_show_in_health_and_are_caught_up_in_one_run(self, database_url, client):
        base = now_base()
        # Three hours of traffic; the stack was down for the last two: only the first hour ran.
        streams.store(database_url, streams.normal_traffic(base - timedelta(hours=3), hours=3))
        assert run(
            database_url, key(base - timedelta(hours=3)), key(base - timedelta(hours=2, minutes=5))
        ).success

        health = client.get("/api/v1/health").json()
        assert health["status"] == "degraded"
        assert health["oldest_stale_window"] == iso(base - timedelta(hours=2))
        assert health["evaluation_lag_seconds"] > 2 * 3600
        assert any("evaluation lag" in reason for reason in health["reasons"])

        first = tick(database_url)
        # One run from the oldest stale window to the last closed one, not one per window.
        assert requested(first) == [(key(base - timedelta(hours=2)), closed())]
        run_requested(database_url, first)

        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok", health["reasons"]
        # (None, unless a window closed during the test: it is the schedule's for now.)
        assert (health["oldest_stale_window"] or "9") >= iso(base)
        assert health["evaluation_lag_seconds"] < 10 * 60
        assert requested(tick(database_url)) == []


class TestLateEvents:
    def test_an_event_committed_after_a_tick_began_is_still_evaluated(self, database_url, db):
        base = now_base()
        streams.store(database_url, streams.normal_traffic(base - timedelta(hours=1), hours=1))
        assert run(
            database_url, key(base - timedelta(hours=1)), key(base - timedelta(minutes=5))
        ).success
        assert requested(tick(database_url)) == []

        late_window = base - timedelta(minutes=30)
        (event,) = streams.dispute(late_window + timedelta(minutes=1), "slow-commit")
        with psycopg.connect(database_url) as slow:
            # Stored by a transaction that began before the tick and commits after it: a
            # received_at or now() cursor has already passed it by then.
            slow.execute(streams.INSERT, streams.row(event))
            assert requested(tick(database_url)) == []  # not visible yet
        assert requested(tick(database_url)) == [(key(late_window), closed())]

    def test_a_run_that_died_before_evaluating_leaves_its_windows_stale(self, database_url, db):
        base = now_base()
        streams.store(database_url, streams.normal_traffic(base - timedelta(hours=1), hours=1))
        # The rollup committed, the rules step never did (a killed run): rolled up, not covered.
        with psycopg.connect(database_url) as conn:
            metrics_sql.roll_up(conn, base - timedelta(hours=1), base)
        assert requested(tick(database_url)) == [(key(base - timedelta(hours=1)), closed())]


@pytest.mark.parametrize(
    ("stale", "expected"),
    [
        pytest.param([], None, id="nothing stale"),
        pytest.param([ANCHOR - timedelta(minutes=5)], None,
                     id="the just-closed window is the schedule's first"),
        pytest.param([ANCHOR - timedelta(hours=3)],
                     (ANCHOR - timedelta(hours=3), ANCHOR - timedelta(hours=2, minutes=35)),
                     id="a late event: its window and the five whose 30-minute sums include it"),
        pytest.param([ANCHOR - timedelta(hours=3), ANCHOR - timedelta(hours=1, minutes=20)],
                     (ANCHOR - timedelta(hours=3), ANCHOR - timedelta(minutes=55)),
                     id="stale windows near each other share one run"),
        pytest.param([ANCHOR - timedelta(days=90), ANCHOR - timedelta(minutes=20)],
                     (ANCHOR - timedelta(days=90), ANCHOR - timedelta(days=90, minutes=-25)),
                     id="far apart: the oldest first, not the 90 days between in one run"),
        pytest.param([ANCHOR - timedelta(minutes=40), ANCHOR - timedelta(minutes=20)],
                     (ANCHOR - timedelta(minutes=40), ANCHOR - timedelta(minutes=5)),
                     id="never past the last closed window"),
    ],
)  # fmt: skip
def test_plan_range(stale, expected):
    assert plan_range(stale, ANCHOR + timedelta(minutes=1)) == expected
