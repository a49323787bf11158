"""SQL for the daily summary: the day's facts from the rollups and anomalies (never the raw
events), and the stored summary."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sentinelops_pipelines.summary import facts as facts_mod
from sentinelops_pipelines.summary.template import Wording

DAY = "date_trunc('day', window_start AT TIME ZONE 'UTC')::date"

DAILY_METRICS = f"""
SELECT {DAY} AS day, count(*) AS windows,
       sum(payment_attempts) AS payments, sum(payments_failed) AS payments_failed,
       sum(refunds) AS refunds, sum(disputes) AS disputes,
       sum(subscriptions_created) AS subscriptions_started,
       sum(subscriptions_cancelled) AS subscriptions_cancelled
  FROM window_metrics
 WHERE window_start >= %(since)s AND window_start < %(until)s
 GROUP BY 1
"""

DAILY_REVENUE = f"""
SELECT {DAY} AS day, currency, sum(amount_sum) AS amount
  FROM window_amounts
 WHERE window_start >= %(since)s AND window_start < %(until)s
 GROUP BY 1, 2
"""

# An anomaly belongs to the day its incident started in (event time, so a backfill tells the
# same story); it is still open at the end of the day unless it was resolved by then. Silenced
# (0012) and cleared (0013) are counted apart, next to these, never instead of them.
NOT_DEMO = "NOT is_demo(evidence)"  # migration 0007
STILL_OPEN = "(status <> 'resolved' OR resolved_at >= %(until)s)"
ANOMALIES = f"""
SELECT severity,
       count(*) FILTER (WHERE window_start >= %(since)s) AS opened,
       count(*) FILTER (WHERE {STILL_OPEN}) AS still_open,
       count(*) FILTER (WHERE status = 'resolved'
                          AND resolved_at >= %(since)s AND resolved_at < %(until)s) AS resolved,
       count(*) FILTER (WHERE window_start >= %(since)s AND silenced_by IS NOT NULL) AS silenced,
       count(*) FILTER (WHERE cleared_at >= %(since)s AND cleared_at < %(until)s) AS cleared,
       count(*) FILTER (WHERE cleared_at < %(until)s AND {STILL_OPEN}) AS cleared_still_open
  FROM anomalies
 WHERE window_start < %(until)s AND {NOT_DEMO}
 GROUP BY severity
"""

OPEN_BY_RULE = f"""
SELECT rule, count(*) FROM anomalies
 WHERE window_start < %(until)s AND {NOT_DEMO} AND {STILL_OPEN}
 GROUP BY rule
"""

SAVE = """
INSERT INTO daily_summaries
       (date, facts, overall, highlights, watch, text, used_ai, ai_error, model)
VALUES (%(day)s, %(facts)s, %(overall)s, %(highlights)s, %(watch)s, %(text)s, %(used_ai)s,
        %(ai_error)s, %(model)s)
ON CONFLICT (date) DO UPDATE SET
    facts = EXCLUDED.facts, overall = EXCLUDED.overall, highlights = EXCLUDED.highlights,
    watch = EXCLUDED.watch, text = EXCLUDED.text, used_ai = EXCLUDED.used_ai,
    ai_error = EXCLUDED.ai_error, model = EXCLUDED.model, updated_at = now()
"""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def load_facts(conn: Connection, day: date) -> dict[str, Any]:
    since = midnight(day - timedelta(days=facts_mod.AVERAGE_DAYS))
    until = midnight(day + timedelta(days=1))
    window = {"since": since, "until": until}
    daily: dict[date, dict[str, int]] = {}
    revenue: dict[date, dict[str, int]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(DAILY_METRICS, window):
            daily[row["day"]] = {k: int(v) for k, v in row.items() if k != "day"}
        for row in cur.execute(DAILY_REVENUE, window):
            revenue.setdefault(row["day"], {})[row["currency"]] = int(row["amount"])
        the_day = {"since": midnight(day), "until": until}
        anomalies = {row["severity"]: row for row in cur.execute(ANOMALIES, the_day)}
        open_by_rule = {row["rule"]: row["count"] for row in cur.execute(OPEN_BY_RULE, the_day)}
    return facts_mod.build(day, daily, revenue, anomalies, open_by_rule)


def get(conn: Connection, day: date) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM daily_summaries WHERE date = %s", (day,)).fetchone()


def save(conn: Connection, day: date, facts: dict, wording: Wording, text: str) -> None:
    conn.execute(
        SAVE,
        {
            "day": day,
            "facts": Jsonb(facts),
            "overall": wording.overall,
            "highlights": Jsonb(wording.highlights),
            "watch": Jsonb(wording.watch),
            "text": text,
            "used_ai": wording.used_ai,
            "ai_error": wording.ai_error,
            "model": wording.model,
        },
    )
