"""The one place that assembles the SentinelOps Dagster code location."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.reconciliation import reconciliation
from sentinelops_pipelines.assets.reporting import daily_summary
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.checks import (
    evaluation_lag,
    notifications_delivered,
    one_open_anomaly_per_incident,
    stripe_events_fresh,
)
from sentinelops_pipelines.jobs import (
    alerts_job,
    daily_summary_job,
    housekeeping_job,
    reconciliation_job,
    rules_backtest_job,
    rules_job,
)
from sentinelops_pipelines.open_window import open_window_sensor
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.schedules import (
    daily_summary_schedule,
    housekeeping_schedule,
    reconciliation_schedule,
    rules_schedule,
)
from sentinelops_pipelines.sensors import (
    alerts_after_runs_sensor,
    coverage_sensor,
    evaluation_lag_sensor,
    pipeline_failure_sensor,
)
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.stripe_api import StripeResource
from sentinelops_pipelines.summary.writers import summary_writer

defs = dg.Definitions(
    assets=[
        stripe_events,
        window_metrics,
        anomalies,
        reconciliation,
        slack_notifications,
        daily_summary,
    ],
    asset_checks=[
        stripe_events_fresh,
        one_open_anomaly_per_incident,
        evaluation_lag,
        notifications_delivered,
    ],
    jobs=[
        rules_job,
        reconciliation_job,
        alerts_job,
        daily_summary_job,
        housekeeping_job,
        rules_backtest_job,
    ],
    schedules=[
        rules_schedule,
        reconciliation_schedule,
        daily_summary_schedule,
        housekeeping_schedule,
    ],
    sensors=[
        coverage_sensor,
        evaluation_lag_sensor,
        alerts_after_runs_sensor,
        pipeline_failure_sensor,
        open_window_sensor,
    ],
    resources={
        "postgres": PostgresResource(),
        "rules": RulesResource(),
        "stripe": StripeResource(),
        # Both read their secrets from the settings at run time; without OPENAI_API_KEY the
        # summary is worded by the deterministic template (TemplateSummary).
        "slack": SlackResource(),
        "summary_writer": summary_writer,
    },
    # Steps run one after another (rollup, then rules); a subprocess per step would add
    # seconds of interpreter start-up to every 5-minute tick.
    executor=dg.in_process_executor,
)
