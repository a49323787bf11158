"""The partitions every SentinelOps asset shares, defined once (UTC); the 5-minute ones are the
windows of sentinelops/windows.py."""

from __future__ import annotations

import dagster as dg

from sentinelops import windows
from sentinelops.settings import get_settings

_settings = get_settings()

five_minute_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule=windows.CRON,
    start=windows.window_key(_settings.partitions_start_at),
    fmt=windows.KEY_FORMAT,
    timezone="UTC",
)

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.partitions_start, timezone="UTC"
)
