"""SQL that counts what a finding's raw events say: one statement per finding, over its
breaching span only, through an index on the events' time (with their type, for rare types).

Failure spikes: payment attempts counted as the rollup counts them (one per PaymentIntent), and
of the failed ones their codes, amounts, and how many distinct cards and customers they used.
Refund and dispute spikes: reasons and amounts. Fingerprints and customer ids are counted
inside PostgreSQL and never leave it. Payloads are read with ->> and guarded casts, so an event
missing a field, or holding something odd in it, is counted as unknown rather than failing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

from sentinelops_pipelines.rules import diagnosis
from sentinelops_pipelines.rules.definitions import CountRule, FailureRateRule, RuleDefinition
from sentinelops_pipelines.rules.metrics import METRIC_TYPES, PAYMENT_TYPES
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.storage.metrics import (
    DECLINE_CODE,
    FAILURE_CODE,
    OBJECT_KEY,
    PAYMENT_KEY,
)

CODE_LENGTH = 64  # a code longer than any of Stripe's is cut, not stored whole
_IN_SPAN = {"t": "e.type", "o": "o"}  # the event's type and data.object in `_span`'s fields


def _span(fields: str) -> str:
    """`ev`: the events of `types` in [since, end), each with `fields` read from its data.object
    `o`. OFFSET 0 keeps `o` from being inlined into every field, so each payload is
    decompressed once, not once per field read from it."""
    return f"""
ev AS (
    SELECT e.type, e.created, e.id, f.*
      FROM stripe_events e CROSS JOIN LATERAL (
           SELECT {fields} FROM (SELECT e.payload #> '{{data,object}}' AS o OFFSET 0) AS obj
      ) AS f
     WHERE e.type = ANY(%(types)s) AND e.created >= %(since)s AND e.created < %(end)s
)"""


# Over `items(currency, amount)`: the amounts of the most common currency (amounts in
# different currencies do not share a scale).
AMOUNTS = """
dominant AS (
    SELECT currency FROM items WHERE currency IS NOT NULL AND amount IS NOT NULL
     GROUP BY currency ORDER BY count(*) DESC, currency LIMIT 1
),
priced AS (
    SELECT amount FROM items WHERE currency = (SELECT currency FROM dominant) AND amount IS NOT NULL
),
amount_stats AS (
    SELECT count(*) AS priced, min(amount) AS min, max(amount) AS max,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY amount) AS median,
           percentile_disc(0.9) WITHIN GROUP (ORDER BY amount) AS p90,
           mode() WITHIN GROUP (ORDER BY amount) AS most_common
      FROM priced
)"""

AMOUNT_COLUMNS = """
(SELECT currency FROM dominant) AS currency, s.priced, s.min, s.median, s.p90, s.max,
s.most_common, (SELECT count(*) FROM priced WHERE amount = s.most_common) AS most_common_count,
(SELECT count(*) FROM items WHERE currency IS NOT NULL AND amount IS NOT NULL) - s.priced
    AS other_currencies"""


def _amount(expr: str) -> str:
    """A jsonb amount as bigint when it is a plain whole number, else NULL."""
    return f"CASE WHEN ({expr})::text ~ '^[0-9]{{1,15}}$' THEN ({expr})::text::bigint END"


def _counts(column: str) -> str:
    return (f"(SELECT coalesce(jsonb_agg(jsonb_build_array(code, n) ORDER BY n DESC, code), '[]')"
            f" FROM (SELECT {column} AS code, count(*) AS n FROM items GROUP BY 1) c)")  # fmt: skip


# The payment an event is about, as the rollup keys it (storage/metrics.py), and what a failed
# one says. The latest failed charge of an attempt gives its codes and card; the PaymentIntent's
# last_payment_error stands in for a charge that is missing.
PAYMENT_FIELDS = f"""
{PAYMENT_KEY.format(**_IN_SPAN)} AS payment_key,
left({FAILURE_CODE.format(**_IN_SPAN)}, {CODE_LENGTH}) AS failure_code,
left({DECLINE_CODE.format(**_IN_SPAN)}, {CODE_LENGTH}) AS decline_code,
lower(o ->> 'currency') AS currency, {_amount("o -> 'amount'")} AS amount,
o #>> '{{payment_method_details,card,fingerprint}}' AS card, o ->> 'customer' AS customer"""

FAILURES = f"""
WITH {_span(PAYMENT_FIELDS)},
charges AS (
    SELECT DISTINCT ON (payment_key) * FROM ev
     WHERE type = 'charge.failed' AND payment_key IS NOT NULL
     ORDER BY payment_key, created DESC, id DESC
),
intents AS (
    SELECT DISTINCT ON (payment_key) * FROM ev
     WHERE type = 'payment_intent.payment_failed' AND payment_key IS NOT NULL
     ORDER BY payment_key, created DESC, id DESC
),
items AS (
    SELECT coalesce(c.failure_code, i.failure_code) AS failure_code,
           coalesce(c.decline_code, i.decline_code) AS decline_code,
           coalesce(c.currency, i.currency) AS currency, coalesce(c.amount, i.amount) AS amount,
           c.card, coalesce(c.customer, i.customer) AS customer
      FROM charges c FULL JOIN intents i USING (payment_key)
),
{AMOUNTS}
SELECT (SELECT count(DISTINCT payment_key) FROM ev) AS attempts,
       (SELECT count(*) FROM items) AS failed,
       {_counts("failure_code")} AS failure_codes,
       {_counts("decline_code")} AS decline_codes,
       (SELECT count(card) FROM items) AS with_card,
       (SELECT count(DISTINCT card) FROM items) AS distinct_cards,
       (SELECT count(customer) FROM items) AS with_customer,
       (SELECT count(DISTINCT customer) FROM items) AS distinct_customers,
       {AMOUNT_COLUMNS}
  FROM amount_stats s
"""

# One refund per refunded charge and one dispute per dispute, as the rollup counts them. A
# charge.refunded event holds its refunds (newest first) when the API version expands them.
REASON_FIELDS = f"""
{OBJECT_KEY.format(**_IN_SPAN)} AS key,
left(CASE WHEN e.type = 'charge.refunded'
          THEN jsonb_path_query_first(o, '$.refunds.data[*].reason ? (@ != null)') #>> '{{}}'
          ELSE o ->> 'reason' END, {CODE_LENGTH}) AS reason,
lower(o ->> 'currency') AS currency,
CASE WHEN e.type = 'charge.refunded' THEN {_amount("o -> 'amount_refunded'")}
     ELSE {_amount("o -> 'amount'")} END AS amount"""

REASONS = f"""
WITH {_span(REASON_FIELDS)},
items AS (
    SELECT (array_agg(reason ORDER BY created DESC, id DESC)
                FILTER (WHERE reason IS NOT NULL))[1] AS reason,
           max(currency) AS currency, max(amount) AS amount
      FROM ev WHERE key IS NOT NULL GROUP BY key
),
{AMOUNTS}
SELECT (SELECT count(*) FROM items) AS count, {_counts("reason")} AS reasons, {AMOUNT_COLUMNS}
  FROM amount_stats s
"""


def _top(rows: list[list[Any]]) -> diagnosis.TopCounts:
    return diagnosis.TopCounts([(code, int(n)) for code, n in rows])


def _amounts(row: dict[str, Any]) -> diagnosis.Amounts:
    return diagnosis.Amounts(
        currency=row["currency"], count=row["priced"], other_currencies=row["other_currencies"],
        min=row["min"], median=row["median"], p90=row["p90"], max=row["max"],
        most_common=row["most_common"], most_common_count=row["most_common_count"],
    )  # fmt: skip


def _one(conn: Connection, query: str, params: dict[str, Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None  # an aggregate over no rows is still one row
    return row


def failure_stats(conn: Connection, since: datetime, end: datetime) -> diagnosis.FailureStats:
    """The payment attempts of [since, end) and what their failed ones have in common."""
    row = _one(conn, FAILURES, {"types": list(PAYMENT_TYPES), "since": since, "end": end})
    return diagnosis.FailureStats(
        attempts=row["attempts"], failed=row["failed"],
        failure_codes=_top(row["failure_codes"]), decline_codes=_top(row["decline_codes"]),
        amounts=_amounts(row), with_card=row["with_card"], distinct_cards=row["distinct_cards"],
        with_customer=row["with_customer"], distinct_customers=row["distinct_customers"],
    )  # fmt: skip


def reason_stats(
    conn: Connection, types: tuple[str, ...], since: datetime, end: datetime
) -> diagnosis.ReasonStats:
    """The refunds or disputes (events of `types`) of [since, end): reasons and amounts."""
    row = _one(conn, REASONS, {"types": list(types), "since": since, "end": end})
    return diagnosis.ReasonStats(row["count"], _top(row["reasons"]), _amounts(row))


# Count spikes whose events carry a reason: a rule counting one of these metrics alone.
REASONED = frozenset({"refunds", "disputes"})


def diagnosed(conn: Connection, finding: Finding, rule: RuleDefinition) -> Finding:
    """The finding with what its breaching span's raw events say of it, for failure spikes
    and refund or dispute spikes; any other finding as it is."""
    since, end = finding.span  # the breaching span's raw events only
    if isinstance(rule, FailureRateRule):
        failures = failure_stats(conn, since, end)
        return diagnosis.with_failure_diagnosis(finding, failures, rule.diagnosis)
    if isinstance(rule, CountRule) and len(rule.metrics) == 1 and rule.metrics[0] in REASONED:
        metric = rule.metrics[0]
        stats = reason_stats(conn, METRIC_TYPES[metric], since, end)
        return diagnosis.with_reason_diagnosis(finding, stats, metric, rule.main_reason_share)
    return finding
