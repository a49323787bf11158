"""The 5-minute windows every rollup, rule, schedule and sensor counts in, defined once (UTC).

Their width and alignment in Python and in SQL, the cron that ticks as each one closes, and the
key that names one as a Dagster partition (`2026-11-29-13:05`). Plain Python, no Dagster: the
partitions definition (sentinelops_pipelines/partitions.py) is built from these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WINDOW = timedelta(minutes=5)
# Windows are aligned on this instant, in Python and in SQL alike.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

# The same width and binning in SQL: `STEP`, and `BIN.format(col="created")`.
STEP = "interval '5 minutes'"
BIN = f"date_bin({STEP}, {{col}}, TIMESTAMPTZ '{ORIGIN:%Y-%m-%d %H:%M:%S+00}')"
# Wider buckets (an hour, a day, several windows) on the same origin, so each holds whole
# windows: `BUCKET.format(step="%(step)s", col="window_start")`.
BUCKET = f"date_bin({{step}}::interval, {{col}}, TIMESTAMPTZ '{ORIGIN:%Y-%m-%d %H:%M:%S+00}')"

# Ticks as each window closes; it is also what delimits the partitions.
CRON = "*/5 * * * *"

# A window's partition key: part of the public contract (`--partition-range A...B`).
KEY_FORMAT = "%Y-%m-%d-%H:%M"


def window_floor(moment: datetime) -> datetime:
    """Start of the 5-minute window holding `moment` (UTC), as the rollups bin it."""
    moment = moment.astimezone(UTC)
    return moment - (moment - ORIGIN) % WINDOW


def window_key(start: datetime) -> str:
    """The partition key of the window starting at `start`."""
    return start.astimezone(UTC).strftime(KEY_FORMAT)
