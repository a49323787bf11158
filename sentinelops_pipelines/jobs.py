"""Jobs: named selections that schedules and sensors launch."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.partitions import five_minute_partitions

rules_job = dg.define_asset_job(
    "rules_job",
    selection=dg.AssetSelection.groups("rules"),
    partitions_def=five_minute_partitions,
    description="Roll up a range of 5-minute windows and evaluate every enabled rule over it.",
)
