"""Rejected webhook attempts (default 30 days), the rules' readings (90 days) and the record of
Slack button presses (7 days) are kept for a while, not forever; so are the early looks'
observations in Dagster's event log (7 days)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

from sentinelops_pipelines.housekeeping import prune_look_observations, prune_slack_interactions
from sentinelops_pipelines.jobs import housekeeping_job
from sentinelops_pipelines.resources import PostgresResource


def test_rejections_past_their_retention_are_pruned_and_recent_ones_kept(database_url, db):
    # A flood of 25,000 attempts 40 days ago (several pruning batches), and recent ones.
    db.execute(
        "INSERT INTO webhook_rejections (received_at, reason, body_size)"
        " SELECT now() - interval '40 days' - n * interval '1 second', 'signature_mismatch', 10"
        "   FROM generate_series(1, 25000) n"
    )
    db.execute(
        "INSERT INTO webhook_rejections (received_at, reason, body_size) VALUES"
        " (now() - interval '29 days', 'signature_mismatch', 10), (now(), 'malformed_header', 5)"
    )

    result = housekeeping_job.execute_in_process(
        resources={"postgres": PostgresResource(database_url=database_url)}
    )

    assert result.success
    assert result.output_for_node("prune_webhook_rejections") == 25_000
    kept = db.execute("SELECT reason FROM webhook_rejections ORDER BY received_at").fetchall()
    assert kept == [("signature_mismatch",), ("malformed_header",)]


def test_readings_past_their_retention_are_pruned_and_recent_ones_kept(database_url, db):
    db.execute(
        "INSERT INTO rule_readings (rule, scope, measure, window_start, label, observed,"
        " bound_kind) SELECT 'refund_spike', 'all', 'count_30m',"
        " date_trunc('hour', now()) - n * interval '5 minutes', 'refunds', 0, 'above'"
        " FROM generate_series(0, 100 * 288) n"
    )
    result = housekeeping_job.execute_in_process(
        resources={"postgres": PostgresResource(database_url=database_url)}
    )
    assert result.success
    oldest = db.execute("SELECT now() - min(window_start) FROM rule_readings").fetchone()[0]
    assert 89 < oldest.total_seconds() / 86400 <= 90
    assert result.output_for_node("prune_rule_readings") > 9 * 288


def test_slack_interactions_older_than_a_week_are_pruned_and_recent_ones_kept(database_url, db):
    # A press is redelivered within minutes at most: a week of them is plenty to apply each once.
    db.execute(
        "INSERT INTO slack_interactions (user_id, action_id, action_ts, outcome, received_at)"
        " SELECT 'U1', 'sentinelops_resolve', n::text, 'applied', now() - %s::interval"
        "   FROM generate_series(1, 3) n",
        ("8 days",),
    )
    db.execute(
        "INSERT INTO slack_interactions (user_id, action_id, action_ts, outcome, received_at)"
        " VALUES ('U1', 'sentinelops_resolve', 'recent', 'conflict', now() - interval '6 days')"
    )
    context = dg.build_op_context(
        resources={"postgres": PostgresResource(database_url=database_url)}
    )
    assert prune_slack_interactions(context) == 3
    kept = db.execute("SELECT action_ts FROM slack_interactions").fetchall()
    assert kept == [("recent",)]


def test_early_look_observations_older_than_a_week_are_pruned_and_recent_ones_kept():
    anomalies = dg.AssetKey("anomalies")
    with dg.instance_for_test() as instance:
        for minutes in (1, 2, 3):
            instance.report_runless_asset_event(
                dg.AssetObservation(asset_key=anomalies, metadata={"minutes_seen": minutes})
            )
        table = SqlEventLogStorageTable
        with instance.event_log_storage.index_connection() as conn:  # two of them 8 days old
            conn.execute(
                table.update()
                .where(table.c.id.in_([1, 2]))
                .values(timestamp=table.c.timestamp - timedelta(days=8))
            )

        pruned = prune_look_observations(dg.build_op_context(instance=instance))

        assert pruned == 2
        kept = instance.fetch_observations(anomalies, limit=10).records
        assert [r.asset_observation.metadata["minutes_seen"].value for r in kept] == [3]
