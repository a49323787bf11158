"""Asset checks: the raw events are fresh when traffic is expected, no incident is split, every
closed window is evaluated in time, and no notification failed for good."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from sentinelops import coverage
from sentinelops.slack import outbox
from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.partitions import five_minute_partitions
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import freshness as freshness_sql

STALE_AFTER = timedelta(minutes=15)
# Traffic "expected" = this many events per 5-minute window at this hour of week, on average.
EXPECTED_PER_WINDOW = 1.0


@dg.asset_check(
    asset=window_metrics, description="Raw events keep arriving when traffic is expected"
)
def stripe_events_fresh(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        per_window, latest, now = freshness_sql.freshness(conn)
    expected = per_window >= EXPECTED_PER_WINDOW
    stale = latest is None or now - latest > STALE_AFTER
    return dg.AssetCheckResult(
        passed=not (expected and stale),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "expected_events_per_5_min": round(per_window, 2),
            "latest_received_at": latest.isoformat() if latest else "never",
        },
    )


# Partitioned like its asset. The checks that judge the present rather than a window
# (stripe_events_fresh, evaluation_lag) are not; rules_job runs all three with every range.
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


@dg.asset_check(
    asset=slack_notifications,
    description="No notification failed for good (a Slack answer no retry can fix)",
)
def notifications_delivered(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        failed = outbox.failed_count(conn)
        newest = outbox.newest_failure(conn)
    if not newest:
        return dg.AssetCheckResult(passed=True, metadata={"failed": 0})
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{failed} notification(s) failed for good; the newest: {newest['last_error']}. "
            "If Slack refused the webhook (403/404/410), set SLACK_WEBHOOK_URL to a working "
            "incoming webhook: each failed notification is then tried once more."
        ),
        metadata={
            "failed": failed,
            "newest_error": newest["last_error"] or "",
            "newest_failed_at": newest["failed_at"].isoformat(),
        },
    )


def scan_coverage(postgres: PostgresResource, *, advance: bool = False) -> coverage.Coverage:
    """The coverage now, from the partitions' start on (coverage.scan)."""
    with postgres.connect() as conn:
        now = datetime.now(UTC)
        return coverage.scan(conn, now, five_minute_partitions.start, advance=advance)


def evaluation_lag_result(state: coverage.Coverage) -> dg.AssetCheckResult:
    """Passes unless the loop is behind (Coverage.behind, as health judges it);
    evaluation_lag_sensor reports it between runs."""
    behind = state.behind()
    lag, oldest = state.lag_seconds, state.oldest_stale
    return dg.AssetCheckResult(
        passed=not behind,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(behind) or None,
        metadata={
            "evaluation_lag_seconds": round(lag, 1) if lag is not None else -1.0,
            "oldest_stale_window": oldest.isoformat() if oldest else "none",
            "stale_windows": len(state.stale_windows),
            "limit_seconds": coverage.LAG_LIMIT.total_seconds(),
        },
    )


# Unpartitioned: it judges the whole loop, not a window, and evaluation_lag_sensor reports it
# between runs (a partition key would collide in Dagster's check table on a second report).
@dg.asset_check(
    asset=anomalies,
    description="Every closed 5-minute window is evaluated with all its events within 15 minutes",
)
def evaluation_lag(postgres: PostgresResource) -> dg.AssetCheckResult:
    return evaluation_lag_result(scan_coverage(postgres))
