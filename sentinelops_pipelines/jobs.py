"""Jobs: the named selections that schedules, sensors and people launch, one per group."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.housekeeping import prune_webhook_rejections
from sentinelops_pipelines.partitions import daily_partitions, five_minute_partitions

rules_job = dg.define_asset_job(
    "rules_job",
    selection=dg.AssetSelection.groups("rules"),
    partitions_def=five_minute_partitions,
    description="Roll up a range of 5-minute windows and evaluate every enabled rule over it.",
)

alerts_job = dg.define_asset_job(
    "alerts_job",
    selection=dg.AssetSelection.groups("alerts"),
    description="Post every due Slack notification once.",
)

daily_summary_job = dg.define_asset_job(
    "daily_summary_job",
    selection=dg.AssetSelection.groups("reporting"),
    partitions_def=daily_partitions,
    description="Build, store and post one day's operations summary.",
)

reconciliation_job = dg.define_asset_job(
    "reconciliation_job",
    selection=dg.AssetSelection.groups("reconciliation"),
    description="List Stripe's Events API, store what the webhook missed, raise webhook gaps.",
    # A run queue can hold every reconciliation run, scheduled or launched by hand, to one.
    tags={"sentinelops/job": "reconciliation"},
)


@dg.job(description="Prune what is kept only for a while (rejected webhook attempts).")
def housekeeping_job() -> None:
    prune_webhook_rejections()
