"""The partitions every SentinelOps asset shares, defined once (UTC)."""

from __future__ import annotations

import dagster as dg

from sentinelops.settings import get_settings

PARTITIONS_START = get_settings().partitions_start

five_minute_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/5 * * * *",
    start=f"{PARTITIONS_START}-00:00",
    fmt="%Y-%m-%d-%H:%M",
    timezone="UTC",
)

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
