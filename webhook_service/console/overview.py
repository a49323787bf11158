"""The overview: the last 24 hours (hourly) and the last 7 days (daily) at a glance, the latest
daily summary, and the loop's own health, read exactly as GET /api/v1/health reads it.

The figures come from the 5-minute rollups the rules write (window_metrics, window_amounts),
never from raw events: a week of traffic is at most 2,016 rows per table, read by their
window_start indexes. Rejected webhooks are counted from webhook_rejections itself: the rollups
start at the first stored event, so a webhook whose every request is refused (a wrong signing
secret on a new install) would otherwise show nothing at all.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from sentinelops.money import format_amount
from sentinelops.windows import BUCKET
from webhook_service import loop_state
from webhook_service.console.access import Viewer, viewer
from webhook_service.console.render import page
from webhook_service.console.trends import COUNT, PERCENT, Bucket, Trend
from webhook_service.deps import PoolDep, SettingsDep
from webhook_service.health import LATEST

router = APIRouter(include_in_schema=False)
CURRENCY_CHARTS = 3  # the largest currencies get a chart each; the table lists every one
# column: (title, what it counts) of the counters charted as bars.
COUNTERS = {
    "payments": ("Payments", "Distinct payments attempted, succeeded or failed."),
    "refunds": ("Refunds", "Charges refunded."),
    "disputes": ("Disputes", "Disputes opened."),
    "cancellations": ("Cancellations", "Subscriptions cancelled."),
    "received": ("Webhook events", "Verified events received, by receipt time."),
    "rejections": ("Rejected webhooks", "Webhook requests refused (bad signature, stale,"
                   " malformed or too large), by receipt time."),
}  # fmt: skip

# One row per bucket of `step` from `since` to `until`, empty buckets included. The step is given
# in seconds and binned on the windows' own origin, so hours and UTC days stay whole whatever the
# session's time zone (a '1 day' added to a timestamptz would follow it across a DST change).
SERIES = f"""
WITH buckets AS (
    SELECT generate_series(%(since)s::timestamptz, %(until)s::timestamptz - %(step)s::interval,
                           %(step)s::interval) AS start
),
metrics AS (
    SELECT {BUCKET.format(step="%(step)s", col="window_start")} AS start,
           sum(payment_attempts) AS payments, sum(payments_failed) AS failed,
           sum(refunds) AS refunds, sum(disputes) AS disputes,
           sum(subscriptions_cancelled) AS cancellations, sum(events_received) AS received
      FROM window_metrics
     WHERE window_start >= %(since)s AND window_start < %(until)s
     GROUP BY 1
),
rejections AS (
    SELECT {BUCKET.format(step="%(step)s", col="received_at")} AS start, count(*) AS rejections
      FROM webhook_rejections
     WHERE received_at >= %(since)s AND received_at < %(until)s
     GROUP BY 1
),
per_currency AS (
    SELECT {BUCKET.format(step="%(step)s", col="window_start")} AS start, currency,
           sum(amount_sum) AS amount
      FROM window_amounts
     WHERE window_start >= %(since)s AND window_start < %(until)s
     GROUP BY 1, 2
),
revenue AS (
    SELECT start, jsonb_object_agg(currency, amount) AS revenue FROM per_currency GROUP BY start
)
SELECT start,
       coalesce(payments, 0)::bigint AS payments, coalesce(failed, 0)::bigint AS failed,
       coalesce(refunds, 0)::bigint AS refunds, coalesce(disputes, 0)::bigint AS disputes,
       coalesce(cancellations, 0)::bigint AS cancellations,
       coalesce(received, 0)::bigint AS received, coalesce(rejections, 0) AS rejections,
       coalesce(revenue, '{{}}') AS revenue
  FROM buckets
  LEFT JOIN metrics USING (start)
  LEFT JOIN rejections USING (start)
  LEFT JOIN revenue USING (start)
 ORDER BY start
"""

LATEST_SUMMARY = """
SELECT date, overall, highlights, watch, used_ai, ai_error, delivered_at
  FROM daily_summaries ORDER BY date DESC LIMIT 1
"""


@router.get("/console/overview")
async def overview(
    request: Request, pool: PoolDep, settings: SettingsDep, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    now = datetime.now(UTC)
    hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    day_end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    async with pool.connection() as conn:
        hourly = await _series(conn, timedelta(hours=1), hour_end - timedelta(hours=24), hour_end)
        daily = await _series(conn, timedelta(days=1), day_end - timedelta(days=7), day_end)
        summary = await _fetch_one(conn, LATEST_SUMMARY)
        latest = await (await conn.execute(LATEST)).fetchone()
        state = await loop_state.read(conn, settings)  # as GET /api/v1/health reads it
    currencies = sorted(
        {c for row in daily for c in row["revenue"]},
        key=lambda c: -_total(daily, c),
    )
    context = {
        "viewer": who,
        "now": now,
        "ranges": [
            ("day", "Last 24 hours", "hourly", trends("hour", hourly, currencies)),
            ("week", "Last 7 days", "daily", trends("day", daily, currencies)),
        ],
        "revenue": [
            (c, format_amount(_total(hourly, c), c), format_amount(_total(daily, c), c))
            for c in currencies
        ],
        "summary": summary,
        "health": health(state, settings.stripe_api_key is not None, latest),
    }
    return page(request, "overview.html", context)


def trends(grain: str, rows: list[dict], currencies: list[str]) -> list[Trend]:
    """The range's charts, in the page's order: payments, failure rate, revenue, the rest."""
    starts = [row["start"] for row in rows]
    ids = itertools.count()

    def trend(title: str, values: list, total: float | None, **more: Any) -> Trend:
        # Numbered, not named: currency codes come from payloads and never go into an id.
        buckets = [Bucket(s, v) for s, v in zip(starts, values, strict=True)]
        unit = more.pop("unit", COUNT)
        return Trend(f"{grain}-{next(ids)}", title, grain, unit, buckets, total, **more)

    def counter(column: str) -> Trend:
        title, note = COUNTERS[column]
        values = [row[column] for row in rows]
        return trend(title, values, sum(values), note=note)

    def money(currency: str) -> Trend:
        amounts = [row["revenue"].get(currency, 0) for row in rows]
        title, note = f"Revenue {currency.upper()}", "Successful payments."
        return trend(title, amounts, sum(amounts), unit=currency, note=note)

    payments = counter("payments")  # built in the page's order: ids follow it
    attempts, failed = sum(r["payments"] for r in rows), sum(r["failed"] for r in rows)
    rates = [100 * r["failed"] / r["payments"] if r["payments"] else None for r in rows]
    overall = 100 * failed / attempts if attempts else None
    note = f"{failed:,} of {attempts:,} payments failed."
    rate = trend("Failure rate", rates, overall, unit=PERCENT, kind="line", note=note)
    revenue = [money(c) for c in currencies[:CURRENCY_CHARTS]]
    rest = [counter(c) for c in ("refunds", "disputes", "cancellations", "received", "rejections")]
    return [payments, rate, *revenue, *rest]


def health(state: loop_state.LoopState, reconciles: bool, latest: tuple | None) -> dict:
    """The loop's state as the page shows it: the figures of GET /api/v1/health, worded."""
    covered = state.coverage
    watermark = duration(state.watermark_age_seconds)
    return {
        "status": state.status,
        "reasons": state.reasons,
        "lag": duration(covered.lag_seconds),
        "oldest_stale": covered.oldest_stale,
        "stale_windows": len(covered.stale_windows),
        "pending": state.notifications_pending,
        "failed": state.notifications_failed,
        "oldest_pending": duration(state.oldest_pending_seconds),
        "watermark": watermark if reconciles else "off (STRIPE_API_KEY unset)",
        "latest_received": latest[1] if latest else None,
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for size, unit, digits in ((86400, "d", 1), (3600, "h", 1), (60, "min", 0)):
        if seconds >= size:
            return f"{seconds / size:.{digits}f} {unit}"
    return f"{seconds:.0f} s"


def _total(rows: list[dict], currency: str) -> int:
    return sum(row["revenue"].get(currency, 0) for row in rows)


async def _series(
    conn: AsyncConnection, step: timedelta, since: datetime, until: datetime
) -> list[dict]:
    seconds = f"{step.total_seconds():.0f} seconds"
    params = {"step": seconds, "since": since, "until": until}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SERIES, params)
        return await cur.fetchall()


async def _fetch_one(conn: AsyncConnection, query: str) -> dict | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query)
        return await cur.fetchone()
