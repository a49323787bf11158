"""The one place that assembles the SentinelOps Dagster code location."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.checks import one_open_anomaly_per_incident, stripe_events_fresh
from sentinelops_pipelines.jobs import rules_job
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.schedules import rules_schedule
from sentinelops_pipelines.sensors import late_events_sensor

defs = dg.Definitions(
    assets=[stripe_events, window_metrics, anomalies],
    asset_checks=[stripe_events_fresh, one_open_anomaly_per_incident],
    jobs=[rules_job],
    schedules=[rules_schedule],
    sensors=[late_events_sensor],
    resources={"postgres": PostgresResource(), "rules": RulesResource()},
    # Steps run one after another (rollup, then rules); a subprocess per step would add
    # seconds of interpreter start-up to every 5-minute tick.
    executor=dg.in_process_executor,
)
