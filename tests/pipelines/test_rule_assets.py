"""The rule assets on a real database: spikes found, normal traffic quiet, one anomaly per
incident, re-runs no-ops, late events re-evaluated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.checks import one_open_anomaly_per_incident
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.slack import SlackResource
from tests import streams
from tests.support import live_rules_file

T0 = datetime(2026, 3, 2, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"


def key(at: datetime) -> str:
    return at.strftime(KEY)


def run_range(url: str, first: datetime, last: datetime, rules: RulesResource | None = None):
    """One run over the partition range [first, last] (window starts), as a backfill does; the
    past day it replays is judged as if it were now (each incident posted on its own)."""
    return dg.materialize(
        [stripe_events, window_metrics, anomalies, one_open_anomaly_per_incident],
        resources={"postgres": PostgresResource(database_url=url),
                   "rules": rules or RulesResource(path=live_rules_file()),
                   "slack": SlackResource()},
        tags={"dagster/asset_partition_range_start": key(first),
              "dagster/asset_partition_range_end": key(last)},
        selection=[window_metrics, anomalies],
    )  # fmt: skip


def anomaly_rows(db) -> list[tuple]:
    return db.execute(
        "SELECT rule, scope, severity, status, window_start, window_end,"
        " evidence->>'windows_breached' FROM anomalies ORDER BY id"
    ).fetchall()


LAST = T0 + timedelta(hours=7, minutes=55)  # the last window of the traffic below


@pytest.fixture
def day_of_traffic(database_url):
    """Eight hours of steady payments, with a 30-minute failure spike at 05:00."""
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    spike = T0 + timedelta(hours=5)
    streams.store(database_url, streams.failure_spike(spike, minutes=30))
    return spike


class TestRuleRuns:
    def test_a_spike_is_one_anomaly_and_normal_traffic_stays_quiet(
        self, database_url, db, day_of_traffic
    ):
        result = run_range(database_url, T0, LAST)

        assert result.success
        rows = anomaly_rows(db)
        assert len(rows) == 1, rows
        rule, scope, severity, status, start, end, breached = rows[0]
        assert (rule, scope, severity, status) == ("payment_failure_spike", "all", "high", "open")
        assert start <= day_of_traffic and end >= day_of_traffic + timedelta(minutes=30)
        assert int(breached) >= 6
        evidence = db.execute("SELECT evidence FROM anomalies").fetchone()[0]
        assert evidence["baseline"]["source"] in ("30_day_average", "default")
        assert evidence["sample_event_ids"] and evidence["rule_version"]
        history = db.execute("SELECT from_status, to_status, actor FROM anomaly_history").fetchall()
        assert history == [(None, "open", "rules")]

    def test_rerunning_any_range_changes_nothing(self, database_url, db, day_of_traffic):
        run_range(database_url, T0, LAST)
        before = db.execute("SELECT * FROM anomalies ORDER BY id").fetchall()
        windows = db.execute("SELECT count(*) FROM anomaly_windows").fetchone()

        run_range(database_url, T0, LAST)
        run_range(database_url, day_of_traffic, day_of_traffic + timedelta(minutes=15))

        assert db.execute("SELECT * FROM anomalies ORDER BY id").fetchall() == before
        assert db.execute("SELECT count(*) FROM anomaly_windows").fetchone() == windows

    def test_payments_not_events_are_counted(self, database_url, db):
        streams.store(database_url, streams.failed_payment(T0 + timedelta(minutes=1), "one"))
        run_range(database_url, T0, T0)
        row = db.execute(
            "SELECT payment_attempts, payments_failed, events FROM window_metrics"
            " WHERE window_start = %s",
            (T0,),
        ).fetchone()
        assert row == (1, 1, 2)

    def test_a_disabled_rule_stays_quiet(self, database_url, db, day_of_traffic, tmp_path):
        from sentinelops_pipelines.rules.definitions import default_rules_text

        path = tmp_path / "rules.toml"
        path.write_text(
            default_rules_text().replace(
                'kind = "failure_rate"', 'kind = "failure_rate"\nenabled = false'
            )
        )
        run_range(database_url, T0, LAST, RulesResource(path=str(path)))
        assert anomaly_rows(db) == []


class TestIncidents:
    def test_a_breach_after_the_quiet_gap_is_a_new_anomaly(self, database_url, db, day_of_traffic):
        later = day_of_traffic + timedelta(hours=2)  # past the quiet gap
        streams.store(database_url, streams.failure_spike(later, minutes=10))
        run_range(database_url, T0, LAST)
        assert [r[0] for r in anomaly_rows(db)] == ["payment_failure_spike"] * 2

    def test_a_breach_after_resolution_opens_a_new_anomaly(self, database_url, db, day_of_traffic):
        run_range(database_url, T0, day_of_traffic + timedelta(minutes=10))
        db.execute("UPDATE anomalies SET status = 'resolved', resolved_at = now()")
        run_range(database_url, day_of_traffic + timedelta(minutes=15), LAST)
        assert [r[3] for r in anomaly_rows(db)] == ["resolved", "open"]

    def test_consecutive_windows_extend_and_severity_only_rises(self, database_url, db):
        # 5-minute-only breach first (low), then a sustained one (30 minutes: high).
        streams.store(database_url, streams.normal_traffic(T0, hours=2))
        streams.store(database_url, streams.failure_spike(T0 + timedelta(minutes=60), 5, 10, 7))
        run_range(database_url, T0, T0 + timedelta(minutes=60))
        assert [r[2] for r in anomaly_rows(db)] == ["low"]
        streams.store(database_url, streams.failure_spike(T0 + timedelta(minutes=65), 25))
        run_range(database_url, T0 + timedelta(minutes=65), T0 + timedelta(minutes=115))
        rows = anomaly_rows(db)
        assert [r[2] for r in rows] == ["high"]
        assert rows[0][4] == T0 + timedelta(minutes=60)
