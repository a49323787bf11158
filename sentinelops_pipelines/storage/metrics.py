"""SQL for the 5-minute rollups and for the windows (with baselines) that rules read.

Everything here is set-based: one statement rolls up a whole partition range, one statement
computes every window's 30-minute sums and 30-day and same-hour-of-week baselines from the
rollup. Raw events are scanned only for the range being rolled up.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import Connection, sql
from psycopg.rows import dict_row

from sentinelops.windows import BIN, STEP
from sentinelops_pipelines.rules.metrics import PROCESSING_CODES
from sentinelops_pipelines.rules.model import AmountWindow, Window

METRICS = (
    "payment_attempts", "payments_failed", "payments_failed_processing", "payments_succeeded",
    "refunds", "disputes",
    "subscriptions_created", "subscriptions_cancelled", "invoice_payments_failed",
    "events", "events_received", "invalid_attempts",
)  # fmt: skip


# pg_current_snapshot() in the INSERT is the snapshot that statement read: the rollup records
# exactly which stored events it counted (sentinelops/coverage.py). A concurrent rollup that read
# less than the stored one leaves it be.

# What an event says, over its type `{t}` and data.object `{o}`; the rollup and the diagnosis
# (storage/diagnosis.py) read events through these. The payment an event is about: a failed card
# payment emits charge.failed and payment_intent.payment_failed, both about one PaymentIntent,
# so payments are counted, not events. A refund is about its charge.
PAYMENT_KEY = (
    "CASE WHEN {t} LIKE 'payment_intent.%%' THEN {o} ->> 'id'"
    " ELSE coalesce({o} ->> 'payment_intent', {o} ->> 'id') END"
)
OBJECT_KEY = "CASE WHEN {t} = 'refund.created' THEN {o} ->> 'charge' ELSE {o} ->> 'id' END"
# A failed charge's codes; a PaymentIntent's last_payment_error for a payment_failed event.
FAILURE_CODE = "coalesce({o} ->> 'failure_code', {o} #>> '{{last_payment_error,code}}')"
DECLINE_CODE = (
    "coalesce({o} #>> '{{outcome,reason}}', {o} #>> '{{last_payment_error,decline_code}}')"
)
_IN_ROLLUP = {"t": "type", "o": "(payload -> 'data' -> 'object')"}

EVENTS_IN_RANGE = f"""
ev AS (
    SELECT id, type, {BIN.format(col="created")} AS window_start,
           {PAYMENT_KEY.format(**_IN_ROLLUP)} AS payment_key,
           {OBJECT_KEY.format(**_IN_ROLLUP)} AS object_key,
           lower(payload #>> '{{data,object,currency}}') AS currency,
           ARRAY[{FAILURE_CODE.format(**_IN_ROLLUP)}, {DECLINE_CODE.format(**_IN_ROLLUP)}]
               AS codes,
           coalesce(payload #>> '{{data,object,amount_received}}',
                    payload #>> '{{data,object,amount}}')::bigint AS amount
      FROM stripe_events
     WHERE created >= %(start)s AND created < %(end)s AND created < %(until)s
)"""

ROLL_UP_METRICS = f"""
WITH {EVENTS_IN_RANGE},
windows AS (
    SELECT generate_series(%(start)s::timestamptz, %(end)s::timestamptz - {STEP}, {STEP})
               AS window_start
),
by_created AS (
    SELECT window_start,
           count(DISTINCT payment_key) FILTER (WHERE type IN ('charge.failed',
               'payment_intent.payment_failed', 'charge.succeeded', 'payment_intent.succeeded'))
               AS payment_attempts,
           count(DISTINCT payment_key) FILTER (WHERE type IN ('charge.failed',
               'payment_intent.payment_failed')) AS payments_failed,
           count(DISTINCT payment_key) FILTER (WHERE type IN ('charge.failed',
               'payment_intent.payment_failed') AND codes && %(processing)s::text[])
               AS payments_failed_processing,
           count(DISTINCT payment_key) FILTER (WHERE type IN ('charge.succeeded',
               'payment_intent.succeeded')) AS payments_succeeded,
           count(DISTINCT object_key) FILTER (WHERE type IN ('charge.refunded', 'refund.created'))
               AS refunds,
           count(DISTINCT object_key) FILTER (WHERE type = 'charge.dispute.created') AS disputes,
           count(DISTINCT object_key) FILTER (WHERE type = 'customer.subscription.created')
               AS subscriptions_created,
           count(DISTINCT object_key) FILTER (WHERE type = 'customer.subscription.deleted')
               AS subscriptions_cancelled,
           count(DISTINCT object_key) FILTER (WHERE type = 'invoice.payment_failed')
               AS invoice_payments_failed,
           count(*) AS events
      FROM ev GROUP BY window_start
),
by_received AS (
    SELECT {BIN.format(col="received_at")} AS window_start, count(*) AS events_received
      FROM stripe_events
     WHERE received_at >= %(start)s AND received_at < %(end)s AND received_at < %(until)s
     GROUP BY 1
),
invalid AS (
    SELECT {BIN.format(col="received_at")} AS window_start, count(*) AS invalid_attempts
      FROM webhook_rejections
     WHERE received_at >= %(start)s AND received_at < %(end)s AND received_at < %(until)s
     GROUP BY 1
)
INSERT INTO window_metrics AS m (window_start, {", ".join(METRICS)}, computed_at, rolled_snapshot)
SELECT w.window_start, {", ".join(f"coalesce({c}, 0)" for c in METRICS)}, clock_timestamp(),
       pg_current_snapshot()
  FROM windows w
  LEFT JOIN by_created USING (window_start)
  LEFT JOIN by_received USING (window_start)
  LEFT JOIN invalid USING (window_start)
ON CONFLICT (window_start) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in METRICS)}, computed_at = EXCLUDED.computed_at,
    rolled_snapshot = EXCLUDED.rolled_snapshot
 WHERE snapshot_covers(EXCLUDED.rolled_snapshot, m.rolled_snapshot)
"""

DELETE_AMOUNTS = """
DELETE FROM window_amounts WHERE window_start >= %(start)s AND window_start < %(end)s
"""

ROLL_UP_AMOUNTS = f"""
WITH {EVENTS_IN_RANGE},
payments AS (
    SELECT DISTINCT ON (window_start, payment_key) window_start, payment_key, currency, amount, id
      FROM ev
     WHERE type IN ('charge.succeeded', 'payment_intent.succeeded')
       AND amount > 0 AND currency IS NOT NULL
     ORDER BY window_start, payment_key, amount DESC, id
)
INSERT INTO window_amounts
       (currency, window_start, payments, amount_sum, amount_max, max_event_id, log_amount_sum,
        log_amount_sq_sum)
SELECT currency, window_start, count(*), sum(amount), max(amount),
       (array_agg(id ORDER BY amount DESC, id))[1], sum(ln(amount)), sum(ln(amount) ^ 2)
  FROM payments GROUP BY currency, window_start
"""


def roll_up(
    conn: Connection, start: datetime, end: datetime, until: datetime | None = None
) -> dict[str, int]:
    """Recompute the rollups of [start, end); returns what was written. `until` counts only
    what happened before it (a replay's early look at a window; the stack's looks count all)."""
    params = {"start": start, "end": end, "until": until or end}
    windows = conn.execute(
        ROLL_UP_METRICS, {**params, "processing": sorted(PROCESSING_CODES)}
    ).rowcount
    conn.execute(DELETE_AMOUNTS, params)
    amounts = conn.execute(ROLL_UP_AMOUNTS, params).rowcount
    events = conn.execute(
        "SELECT coalesce(sum(events), 0) FROM window_metrics"
        " WHERE window_start >= %(start)s AND window_start < %(end)s",
        params,
    ).fetchone()
    return {"windows": windows, "currency_windows": amounts, "events": int(events[0])}  # type: ignore[index]


# The rules read 2-hour sums of payments only (the failure rate, the volume refunds follow).
METRICS_2H = (
    "payment_attempts", "payments_failed", "payments_failed_processing", "payments_succeeded"
)  # fmt: skip
METRICS_TYPICAL = ("events",)  # the same hour of week's median week, for silence


def _columns(template: str, metrics: tuple[str, ...] = METRICS) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(template.format(m=m)) for m in metrics)


# For each window in range: its own values, the 30-minute and 2-hour sums ending with it, the
# 30 days before it, and the same hour of week in the four weeks before it.
WINDOWS = sql.SQL("""
WITH span AS (
    SELECT * FROM window_metrics
     WHERE window_start >= %(start)s::timestamptz - interval '30 days'
       AND window_start < %(end)s
),
-- The 30 days first, on the narrow rows: its frame of 8,640 rows slides over a tuplestore that
-- must stay in memory (spilled, every row re-reads the frame's head from disk).
thirty AS (
    SELECT span.*, {sum_30d}, count(*) OVER d30 AS windows_30d
      FROM span
    WINDOW d30 AS (ORDER BY window_start
                   RANGE BETWEEN interval '30 days' PRECEDING AND {step} PRECEDING)
),
rolled AS (
    SELECT window_start, rolled_snapshot::text AS rolled_snapshot,
           {current}, {sum_30m}, {sum_2h}, {cols_30d}, windows_30d
      FROM thirty
     -- The short sums look back under 2 hours: the rest of the 30 days only fed the long ones.
     WHERE window_start >= %(start)s::timestamptz - interval '2 hours'
    WINDOW m30 AS (ORDER BY window_start
                   RANGE BETWEEN interval '25 minutes' PRECEDING AND CURRENT ROW),
           h2 AS (ORDER BY window_start
                  RANGE BETWEEN interval '115 minutes' PRECEDING AND CURRENT ROW)
),
hourly AS (
    SELECT date_trunc('hour', window_start) AS hour, count(*) AS n, {hourly}
      FROM span GROUP BY 1
),
same_hour AS (
    SELECT r.window_start, sum(h.n) AS windows_same_hour, {sum_how}, {typical_how}
      FROM rolled r
      CROSS JOIN generate_series(1, 4) AS k
      JOIN hourly h ON h.hour = date_trunc('hour', r.window_start) - k * interval '7 days'
     WHERE r.window_start >= %(start)s
     GROUP BY r.window_start
)
SELECT r.*, coalesce(s.windows_same_hour, 0) AS windows_same_hour, {how_cols}, {typical_cols}
  FROM rolled r LEFT JOIN same_hour s USING (window_start)
 WHERE r.window_start >= %(start)s
 ORDER BY r.window_start
""").format(
    step=sql.SQL(STEP),
    current=_columns("{m}"),
    sum_30m=_columns("sum({m}) OVER m30 AS {m}_30m"),
    sum_2h=_columns("sum({m}) OVER h2 AS {m}_2h", METRICS_2H),
    sum_30d=_columns("coalesce(sum({m}) OVER d30, 0) AS {m}_30d"),
    cols_30d=_columns("{m}_30d"),
    hourly=_columns("sum({m}) AS {m}"),
    sum_how=_columns("sum(h.{m}) AS {m}_how"),
    # The median week's level times the windows: one unusual week (an incident, a sale) does
    # not move it. Silence reads it: an expectation of traffic must not rest on one busy week.
    typical_how=_columns(
        "round(percentile_cont(0.5) WITHIN GROUP (ORDER BY h.{m}::float8 / h.n) * sum(h.n))"
        "::bigint AS {m}_typical",
        METRICS_TYPICAL,
    ),
    typical_cols=_columns("coalesce(s.{m}_typical, 0) AS {m}_typical", METRICS_TYPICAL),
    how_cols=_columns("coalesce(s.{m}_how, 0) AS {m}_how"),
)

# The spread of log amounts rests only on rows rolled up since migration 0008 (older ones have
# no squares); sums over numeric, so the sliding 30-day frame subtracts exactly what it added.
SPREAD = "log_amount_sq_sum IS NOT NULL"
AMOUNTS = f"""
WITH span AS (
    SELECT * FROM window_amounts
     WHERE window_start >= %(start)s::timestamptz - interval '30 days' AND window_start < %(end)s
),
rolled AS (
    SELECT currency, window_start, payments, amount_max, max_event_id,
           coalesce(sum(payments) OVER d30, 0) AS history_payments,
           coalesce(sum(amount_sum) OVER d30, 0) AS history_amount,
           coalesce(sum(payments) FILTER (WHERE {SPREAD}) OVER d30, 0) AS spread_payments,
           count(*) FILTER (WHERE {SPREAD}) OVER d30 AS spread_windows,
           coalesce(sum(log_amount_sum::numeric) FILTER (WHERE {SPREAD}) OVER d30, 0)
               AS spread_log_amount,
           coalesce(sum(log_amount_sq_sum::numeric) FILTER (WHERE {SPREAD}) OVER d30, 0)
               AS spread_log_amount_sq
      FROM span
    WINDOW d30 AS (PARTITION BY currency ORDER BY window_start
                   RANGE BETWEEN interval '30 days' PRECEDING AND {STEP} PRECEDING)
)
SELECT * FROM rolled WHERE window_start >= %(start)s
"""


MARK_EVALUATED = """
UPDATE window_metrics m SET evaluated_snapshot = u.snapshot::pg_snapshot
  FROM unnest(%(starts)s::timestamptz[], %(snapshots)s::text[]) AS u(window_start, snapshot)
 WHERE m.window_start = u.window_start
   AND snapshot_covers(u.snapshot::pg_snapshot, m.evaluated_snapshot)
"""


def mark_evaluated(conn: Connection, snapshots: dict[datetime, str]) -> None:
    """Record that the rules judged these windows as rolled up under these snapshots; in the
    transaction that writes their anomalies, so a run that dies leaves them stale."""
    conn.execute(MARK_EVALUATED, {"starts": list(snapshots), "snapshots": list(snapshots.values())})


def load_windows(conn: Connection, start: datetime, end: datetime) -> list[Window]:
    """Every rolled-up window in [start, end) with what the rules need to judge it."""
    return load_windows_for_evaluation(conn, start, end)[0]


def load_windows_for_evaluation(
    conn: Connection, start: datetime, end: datetime
) -> tuple[list[Window], dict[datetime, str]]:
    """The windows, and the snapshot each was rolled up under (for `mark_evaluated`)."""
    params = {"start": start, "end": end}
    amounts: dict[datetime, list[AmountWindow]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(AMOUNTS, params):
            amounts.setdefault(row["window_start"], []).append(
                AmountWindow(
                    currency=row["currency"],
                    payments=row["payments"],
                    amount_max=row["amount_max"],
                    max_event_id=row["max_event_id"],
                    history_payments=int(row["history_payments"]),
                    history_amount=int(row["history_amount"]),
                    spread_payments=int(row["spread_payments"]),
                    spread_windows=int(row["spread_windows"]),
                    spread_log_amount=float(row["spread_log_amount"]),
                    spread_log_amount_sq=float(row["spread_log_amount_sq"]),
                )
            )
        rows = cur.execute(WINDOWS, params).fetchall()
    snapshots = {row["window_start"]: row["rolled_snapshot"] for row in rows}
    return [
        Window(
            start=row["window_start"],
            current={m: int(row[m]) for m in METRICS},
            last_30m={m: int(row[f"{m}_30m"]) for m in METRICS},
            last_2h={m: int(row[f"{m}_2h"]) for m in METRICS_2H},
            history_30d={m: int(row[f"{m}_30d"]) for m in METRICS},
            windows_30d=int(row["windows_30d"]),
            same_hour={m: int(row[f"{m}_how"]) for m in METRICS},
            same_hour_typical={m: int(row[f"{m}_typical"]) for m in METRICS_TYPICAL},
            windows_same_hour=int(row["windows_same_hour"]),
            amounts=amounts.get(row["window_start"], []),
        )
        for row in rows
    ], snapshots
