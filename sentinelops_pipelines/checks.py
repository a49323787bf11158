"""Asset checks: the raw events are fresh when traffic is expected, and no incident is split."""

from datetime import timedelta

import dagster as dg

from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.partitions import five_minute_partitions
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.storage import anomalies as anomaly_sql

STALE_AFTER = timedelta(minutes=15)
# Checks share the assets' partitions: an unpartitioned check on a partitioned asset makes
# Dagster enumerate every partition since the start (about 100k keys a year) on each run.
# Traffic "expected" = this many events per 5-minute window at this hour of week, on average.
EXPECTED_PER_WINDOW = 1.0

FRESHNESS = """
WITH expected AS (
    SELECT sum(events)::float / nullif(count(*), 0) AS per_window
      FROM window_metrics
     WHERE date_trunc('hour', window_start) IN (
           SELECT date_trunc('hour', now()) - k * interval '7 days' FROM generate_series(1, 4) k)
)
SELECT (SELECT per_window FROM expected), (SELECT max(received_at) FROM stripe_events), now()
"""


@dg.asset_check(
    asset=window_metrics, description="Raw events keep arriving when traffic is expected"
)
def stripe_events_fresh(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        per_window, latest, now = conn.execute(FRESHNESS).fetchone()  # type: ignore[misc]
    expected = (per_window or 0.0) >= EXPECTED_PER_WINDOW
    stale = latest is None or now - latest > STALE_AFTER
    return dg.AssetCheckResult(
        passed=not (expected and stale),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "expected_events_per_5_min": round(per_window or 0.0, 2),
            "latest_received_at": latest.isoformat() if latest else "never",
        },
    )


@dg.asset_check(
    asset=anomalies,
    partitions_def=five_minute_partitions,
    description="At most one unresolved anomaly per incident",
)
def one_open_anomaly_per_incident(
    postgres: PostgresResource, rules: RulesResource
) -> dg.AssetCheckResult:
    gap = timedelta(minutes=rules.load().quiet_gap_minutes)
    with postgres.connect() as conn:
        pairs = anomaly_sql.duplicate_open_incidents(conn, gap)
    return dg.AssetCheckResult(
        passed=not pairs,
        metadata={"split_incidents": [f"{r}/{s}: {a} and {b}" for r, s, a, b in pairs]},
    )
