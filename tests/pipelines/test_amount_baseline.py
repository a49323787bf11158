"""The amount rule's baseline on a real database: the rollup stores the squares of log amounts
(migration 0008), the windows read the spread only from rows that have them, and re-rolling the
older history (the documented backfill) brings it in."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)
FIVE = timedelta(minutes=5)
SPIKE = T0 + 2 * DAY  # the first window after two days of history
RULE = load_rules().rules["amount_spike"]


def tight(w: int) -> list[int]:
    """Day two's amounts in window w: 10.00 to 14.99 USD."""
    return [1000 + (w * 37) % 500, 1000 + (w * 91 + 250) % 500]


@pytest.fixture
def history(database_url):
    """Day one: amounts of 1.00 and 10,000.00 USD, rolled up as before migration 0008 (no
    squares); day two: 10.00-14.99 USD, rolled up since; then a 1,000.00 USD payment."""
    events = []
    for w in range(288):
        at = T0 + w * FIVE
        for p, amount in enumerate((100, 1_000_000)):
            events += streams.succeeded_payment(at + timedelta(seconds=p), f"a{w}_{p}", amount)
        for p, amount in enumerate(tight(w)):
            events += streams.succeeded_payment(at + DAY + timedelta(seconds=p), f"b{w}_{p}",
                                                amount)  # fmt: skip
    events += streams.succeeded_payment(SPIKE + timedelta(seconds=30), "spike", 100_000)
    streams.store(database_url, events)
    with psycopg.connect(database_url) as conn:
        metrics_sql.roll_up(conn, T0, SPIKE + FIVE)
        conn.execute(
            "UPDATE window_amounts SET log_amount_sq_sum = NULL WHERE window_start < %s",
            (T0 + DAY,),
        )


def spike_window(database_url):
    with psycopg.connect(database_url) as conn:
        (w,) = metrics_sql.load_windows(conn, SPIKE, SPIKE + FIVE)
    return w


def test_the_rollup_stores_the_squares_of_log_amounts(history, db):
    w = 7
    stored = db.execute(
        "SELECT payments, log_amount_sum, log_amount_sq_sum FROM window_amounts"
        " WHERE window_start = %s",
        (T0 + DAY + w * FIVE,),
    ).fetchone()
    logs = [math.log(a) for a in tight(w)]
    assert stored[0] == 2
    assert stored[1] == pytest.approx(sum(logs))
    assert stored[2] == pytest.approx(sum(x * x for x in logs))


def test_rows_without_squares_are_left_out_of_the_spread(history, database_url):
    w = spike_window(database_url)
    (usd,) = w.amounts
    assert usd.history_payments == 1152
    assert (usd.spread_payments, usd.spread_windows) == (576, 288)  # day two only

    (finding,) = evaluate("amount_spike", RULE, w)
    baseline = finding.evidence["baseline"]
    assert (baseline["payments"], baseline["windows"]) == (576, 288)
    assert 1100 < baseline["geometric_mean"] < 1300 and baseline["log_sd"] < 0.2
    assert finding.severity == "high"
    assert finding.title.startswith("A payment of 1,000.00 USD is far above usual for USD")


def test_re_rolling_the_older_history_brings_its_spread_in(history, database_url):
    with psycopg.connect(database_url) as conn:
        metrics_sql.roll_up(conn, T0, T0 + DAY)  # the backfill after upgrading

    (usd,) = spike_window(database_url).amounts
    assert (usd.spread_payments, usd.spread_windows) == (1152, 576)
    # Against 1.00 to 10,000.00 USD, a payment of 1,000.00 USD is no surprise.
    assert evaluate("amount_spike", RULE, spike_window(database_url)) == []
