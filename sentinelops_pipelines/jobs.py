"""Jobs: the named selections that schedules, sensors and people launch, one per group."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sentinelops_pipelines.housekeeping import prune_webhook_rejections
from sentinelops_pipelines.partitions import daily_partitions, five_minute_partitions


def group_job(
    name: str, group: str, description: str, **options: Any
) -> dg.UnresolvedAssetJobDefinition:
    """A job that materializes one asset group (partitions, tags: `options`)."""
    return dg.define_asset_job(
        name, selection=dg.AssetSelection.groups(group), description=description, **options
    )


rules_job = group_job(
    "rules_job",
    "rules",
    "Roll up a range of 5-minute windows and evaluate every enabled rule over it.",
    partitions_def=five_minute_partitions,
)
alerts_job = group_job("alerts_job", "alerts", "Post every due Slack notification once.")
daily_summary_job = group_job(
    "daily_summary_job",
    "reporting",
    "Build, store and post one day's operations summary.",
    partitions_def=daily_partitions,
)
reconciliation_job = group_job(
    "reconciliation_job",
    "reconciliation",
    "List Stripe's Events API, store what the webhook missed, raise webhook gaps.",
    # A run queue can hold every reconciliation run, scheduled or launched by hand, to one.
    tags={"sentinelops/job": "reconciliation"},
)


@dg.job(description="Prune what is kept only for a while (rejected webhook attempts).")
def housekeeping_job() -> None:
    prune_webhook_rejections()
