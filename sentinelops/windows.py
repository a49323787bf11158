"""The 5-minute windows every rollup, rule, schedule and sensor counts in, defined once (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WINDOW = timedelta(minutes=5)

# The same binning in SQL: `BIN.format(col="created")`.
BIN = "date_bin('5 minutes', {col}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def window_floor(moment: datetime) -> datetime:
    """Start of the 5-minute window holding `moment` (UTC), as the rollups bin it."""
    moment = moment.astimezone(UTC)
    return moment.replace(second=0, microsecond=0) - timedelta(minutes=moment.minute % 5)
