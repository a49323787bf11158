"""The asset checks the Dagster UI shows on the rule assets: raw events fresh when traffic is
expected (a warning), at most one unresolved anomaly per incident (an error); each run in-process
on real PostgreSQL, passing and failing, with the metadata a user reads beside the result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from psycopg.types.json import Jsonb

from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.checks import one_open_anomaly_per_incident, stripe_events_fresh
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.slack import SlackResource
from tests.support import fixture_event

PARTITION = "2026-05-01-00:00"
QUIET_GAP = timedelta(minutes=load_rules().quiet_gap_minutes)  # the packaged rules'


def run_check(
    database_url: str,
    asset: dg.AssetsDefinition,
    check: dg.AssetChecksDefinition,
    partition: str | None = None,
) -> dg.AssetCheckEvaluation:
    """The check alone, as the UI's "Execute" on it runs it: its asset is not materialized."""
    # Dagster validates a run's partition key against the selected assets, and a check-only
    # selection has none: the key travels as the run's partition tag instead.
    result = dg.materialize(
        [asset, check],
        selection=dg.AssetSelection.checks(check),
        resources={
            "postgres": PostgresResource(database_url=database_url),
            "rules": RulesResource(),
            "slack": SlackResource(),
        },
        tags={"dagster/partition": partition} if partition else None,
    )
    assert result.success and not result.get_asset_materialization_events()
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


class TestStripeEventsFresh:
    """Traffic is expected when this hour of the week averaged at least one event per 5-minute
    window over the last four weeks; then the newest event must be under 15 minutes old."""

    def usual_traffic(self, db, events_per_window: int, hours_away: int = 0) -> None:
        # The 5-minute windows of this hour and the next, each of the last four weeks (the next
        # too, so a test that runs across the top of the hour still finds its baseline).
        db.execute(
            "INSERT INTO window_metrics (window_start, events)"
            " SELECT date_trunc('hour', now()) + %s * interval '1 hour'"
            "        - week * interval '7 days' + n * interval '5 minutes', %s"
            "   FROM generate_series(1, 4) week, generate_series(0, 23) n",
            (hours_away, events_per_window),
        )

    def received(self, db, minutes_ago: int) -> datetime:
        event = fixture_event("charge.succeeded.json")
        return db.execute(
            "INSERT INTO stripe_events (id, type, created, livemode, payload, received_at)"
            " VALUES (%s, %s, to_timestamp(%s), false, %s, now() - %s * interval '1 minute')"
            " RETURNING received_at",
            (event["id"], event["type"], event["created"], Jsonb(event), minutes_ago),
        ).fetchone()[0]

    @pytest.mark.parametrize(
        ("events_per_window", "minutes_ago", "passed"),
        [
            pytest.param(3, 1, True, id="traffic expected and the last event a minute old"),
            pytest.param(3, 14, True, id="traffic expected and the last event 14 minutes old"),
            pytest.param(3, 20, False, id="traffic expected and nothing for 20 minutes"),
            pytest.param(1, 20, False, id="one event per window is expected traffic"),
            pytest.param(0, 20, True, id="a quiet hour of the week: silence is normal"),
        ],
    )
    def test_old_events_warn_only_when_traffic_is_expected(
        self, database_url, db, events_per_window, minutes_ago, passed
    ):
        self.usual_traffic(db, events_per_window)
        latest = self.received(db, minutes_ago)

        check = run_check(database_url, window_metrics, stripe_events_fresh)

        assert (check.passed, check.severity) == (passed, dg.AssetCheckSeverity.WARN)
        assert check.metadata["expected_events_per_5_min"].value == events_per_window
        assert datetime.fromisoformat(check.metadata["latest_received_at"].value) == latest

    def test_no_event_ever_received_warns_when_traffic_is_expected(self, database_url, db):
        self.usual_traffic(db, 3)
        check = run_check(database_url, window_metrics, stripe_events_fresh)
        assert not check.passed
        assert check.metadata["latest_received_at"].value == "never"

    def test_traffic_at_other_hours_of_the_week_does_not_count(self, database_url, db):
        self.usual_traffic(db, 50, hours_away=-12)
        self.received(db, 60 * 12)
        check = run_check(database_url, window_metrics, stripe_events_fresh)
        assert check.passed
        assert check.metadata["expected_events_per_5_min"].value == 0.0

    def test_a_new_install_with_no_history_passes(self, database_url):
        check = run_check(database_url, window_metrics, stripe_events_fresh)
        assert check.passed
        assert check.metadata["expected_events_per_5_min"].value == 0.0
        assert check.metadata["latest_received_at"].value == "never"


WINDOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def add_anomaly(db, *, rule="refund_spike", scope="all", status="open", later=timedelta()) -> int:
    start = WINDOW + later
    return db.execute(
        "INSERT INTO anomalies (rule, scope, severity, status, title, window_start, window_end,"
        " evidence) VALUES (%s, %s, 'high', %s, 'Refunds 9x usual', %s, %s, '{}') RETURNING id",
        (rule, scope, status, start, start + timedelta(minutes=5)),
    ).fetchone()[0]


class TestOneOpenAnomalyPerIncident:
    """Breaches of one rule and scope closer than the rules' quiet gap are one incident: two
    unresolved anomalies for it mean an incident was split (alerted twice)."""

    @pytest.mark.parametrize(
        "second",
        [
            pytest.param({"later": QUIET_GAP / 3}, id="a second open anomaly within the gap"),
            pytest.param({"later": -QUIET_GAP / 3}, id="found in an earlier window"),
            pytest.param({"status": "acknowledged"}, id="an acknowledged one is still unresolved"),
        ],
    )
    def test_a_split_incident_fails_and_names_both_anomalies(self, database_url, db, second):
        first = add_anomaly(db)
        other = add_anomaly(db, **second)

        check = run_check(database_url, anomalies, one_open_anomaly_per_incident, PARTITION)

        assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.ERROR)
        assert check.metadata["split_incidents"].value == [f"refund_spike/all: {first} and {other}"]
        assert check.partition == PARTITION

    @pytest.mark.parametrize(
        "second",
        [
            pytest.param(None, id="a single anomaly"),
            pytest.param({"status": "resolved"}, id="the other one is resolved"),
            pytest.param({"later": 3 * QUIET_GAP}, id="further apart than the quiet gap"),
            pytest.param({"scope": "eur"}, id="same windows, another scope"),
            pytest.param({"rule": "dispute_spike"}, id="same windows, another rule"),
        ],
    )
    def test_separate_incidents_pass(self, database_url, db, second):
        add_anomaly(db)
        if second is not None:
            add_anomaly(db, **second)

        check = run_check(database_url, anomalies, one_open_anomaly_per_incident, PARTITION)

        assert (check.passed, check.severity) == (True, dg.AssetCheckSeverity.ERROR)
        assert check.metadata["split_incidents"].value == []
