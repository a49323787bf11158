"""Rule assets: 5-minute rollups of the raw events, then every enabled rule over them.

Both share the 5-minute partitions and a single-run backfill policy, so a partition range is
one run: one set-based rollup of the range, then one evaluation pass over its windows.
"""

from collections import Counter
from typing import Any

import dagster as dg

from sentinelops.settings import get_settings
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.partitions import five_minute_partitions
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.slack import SlackResource, deliver_found
from sentinelops_pipelines.storage import metrics as metrics_sql

REASON_TAG = "sentinelops/reason"  # why a run was started: coverage, demo, ...

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
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    rules: RulesResource,
    slack: SlackResource,
) -> dg.MaterializeResult:
    """Anomalies found by every enabled rule in each window, one per incident: consecutive
    breaches extend the open anomaly, and re-running any range changes nothing. What a run
    opens or escalates is posted to Slack right after it commits (the alerts job is the
    backstop). Early looks at the open window (open_window_sensor) show as observations."""
    book = rules.load()
    # Read at run time: openings below it are recorded but not posted to Slack.
    notify_from = get_settings().alert_min_severity
    window = context.partition_time_window
    with postgres.connect() as conn:
        result = evaluate_range(
            conn, book, window.start, window.end, notify_from, run_id=context.run_id
        )
    # After the commit: the alerts are posted now, not after another run is launched. The demo
    # posts its own (and says so), so its run leaves them queued.
    posted: Counter[str] = Counter()
    if context.run.tags.get(REASON_TAG) != "demo":
        posted = deliver_found(postgres.url(), slack, result.announced, context.log)
    outcomes = result.outcomes
    context.log.info("evaluated %d windows with %d rules: %s", result.windows,
                     len(book.enabled()), dict(outcomes))  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "windows_evaluated": result.windows,
            "rules_enabled": sorted(book.enabled()),
            "anomalies_opened": outcomes["opened"],
            "anomalies_extended": outcomes["extended"],
            "anomalies_escalated": outcomes["escalated"],
            "findings_already_recorded": outcomes["unchanged"],
            "incidents_found_late": result.found_late,
            "incidents_cleared": result.cleared,
            "early_breaches_confirmed": outcomes["confirmed"],
            "early_breaches_unconfirmed": result.unconfirmed,
            "alerts_posted_at_once": posted["sent"],
            "by_rule": dict(result.by_rule),
        }
    )
