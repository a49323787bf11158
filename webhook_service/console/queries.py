"""SQL the console reads beyond the API's own repositories: the chart's series."""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from sentinelops.windows import BUCKET

# One row per bucket: the window of the bucket that came closest to firing (the largest value
# for a bound above, the smallest for a bound below), with its own expected value and bound, so
# a bucketed chart still shows a point past its bound exactly where a window fired.
SERIES = f"""
SELECT DISTINCT ON (bucket)
       {BUCKET.format(step="%(bucket)s", col="window_start")} AS bucket,
       window_start, label, observed, expected, bound, bound_kind
  FROM rule_readings
 WHERE rule = %(rule)s AND scope = %(scope)s AND measure = %(measure)s
   AND window_start >= %(since)s AND window_start < %(until)s
 ORDER BY bucket,
          CASE WHEN bound_kind = 'below' THEN observed ELSE -observed END,
          window_start
"""

# Which measure to draw when the anomaly does not say (recorded before charts existed): the
# first the rule stored around the incident.
FIRST_MEASURE = """
SELECT measure FROM rule_readings
 WHERE rule = %(rule)s AND scope = %(scope)s
   AND window_start >= %(since)s AND window_start < %(until)s
 ORDER BY measure LIMIT 1
"""


async def series(
    conn: AsyncConnection,
    rule: str,
    scope: str,
    measure: str | None,
    since: datetime,
    until: datetime,
    bucket: timedelta,
) -> list[dict]:
    params = {"rule": rule, "scope": scope, "measure": measure, "since": since, "until": until,
              "bucket": bucket}  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        if measure is None:
            await cur.execute(FIRST_MEASURE, params)
            row = await cur.fetchone()
            if row is None:
                return []
            params["measure"] = row["measure"]
        await cur.execute(SERIES, params)
        return await cur.fetchall()
