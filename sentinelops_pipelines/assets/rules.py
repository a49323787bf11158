"""Rule assets: 5-minute rollups of the raw events, then every enabled rule over them.

Both share the 5-minute partitions and a single-run backfill policy, so a partition range is
one run: one set-based rollup of the range, then one evaluation pass over its windows.
"""

from collections import Counter
from datetime import timedelta
from typing import Any

import dagster as dg

from sentinelops.settings import get_settings
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.partitions import five_minute_partitions
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import catch_up
from sentinelops_pipelines.storage import diagnosis as diagnosis_sql
from sentinelops_pipelines.storage import metrics as metrics_sql

# What makes `group:rules` one run over any partition range: one group, the shared 5-minute
# partitions, and a single-run backfill policy.
RULE_ASSET: dict[str, Any] = {
    "group_name": "rules",
    "partitions_def": five_minute_partitions,
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "kinds": {"postgres"},
}


@dg.asset(deps=[stripe_events], **RULE_ASSET)
def window_metrics(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Stripe events rolled up per 5-minute window (payments, failures, refunds, disputes,
    subscriptions, webhook traffic) and per currency, the input of every rule baseline."""
    window = context.partition_time_window
    with postgres.connect() as conn:
        written = metrics_sql.roll_up(conn, window.start, window.end)
    return dg.MaterializeResult(
        metadata={
            "range": f"{window.start.isoformat()} .. {window.end.isoformat()}",
            "windows_rolled_up": written["windows"],
            "currency_windows": written["currency_windows"],
            "events_in_range": written["events"],
        }
    )


@dg.asset(deps=[window_metrics], **RULE_ASSET)
def anomalies(
    context: dg.AssetExecutionContext, postgres: PostgresResource, rules: RulesResource
) -> dg.MaterializeResult:
    """Anomalies found by every enabled rule in each window, one per incident: consecutive
    breaches extend the open anomaly, and re-running any range changes nothing."""
    book = rules.load()
    enabled = book.enabled()
    gap = timedelta(minutes=book.quiet_gap_minutes)
    # Read at run time: openings below it are recorded but not posted to Slack.
    notify_from = get_settings().alert_min_severity
    window = context.partition_time_window
    outcomes: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    announced: list[tuple[int, str]] = []
    with postgres.connect() as conn:
        windows, snapshots = metrics_sql.load_windows_for_evaluation(conn, window.start, window.end)
        findings = [
            finding
            for w in windows
            for name, definition in enabled.items()
            for finding in evaluate(name, definition, w)
        ]
        # What kind of spike each one is, from its breaching span's raw events only.
        findings = [diagnosis_sql.diagnosed(conn, f, enabled[f.rule]) for f in findings]
        for finding in anomaly_sql.in_lock_order(findings):
            outcome = anomaly_sql.record(conn, finding, gap, notify_from, announced)
            outcomes[outcome] += 1
            if outcome != "unchanged":
                by_rule[f"{finding.rule}:{outcome}"] += 1
        late_after = timedelta(minutes=book.found_late_after_minutes)
        found_late = catch_up.announce(conn, announced, notify_from, late_after)
        # Same transaction as the anomalies: a run that dies leaves its windows stale.
        metrics_sql.mark_evaluated(conn, snapshots)
    context.log.info("evaluated %d windows with %d rules: %s", len(windows), len(enabled),
                     dict(outcomes))  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "windows_evaluated": len(windows),
            "rules_enabled": sorted(enabled),
            "anomalies_opened": outcomes["opened"],
            "anomalies_extended": outcomes["extended"],
            "anomalies_escalated": outcomes["escalated"],
            "findings_already_recorded": outcomes["unchanged"],
            "incidents_found_late": found_late,
            "by_rule": dict(by_rule),
        }
    )
