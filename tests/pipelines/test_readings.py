"""What the rules read in each window (rule_readings), the series an incident's chart draws: a
reading's bound is where its rule's decision fires, the measure a finding names is drawn, and an
evaluation stores one reading per rule, measure and window, however often it runs."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.rules.definitions import RuleDefinition, Strengths, load_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import AmountWindow, Window
from sentinelops_pipelines.rules.readings import Reading, readings
from sentinelops_pipelines.rules.significance import (
    binomial_bound,
    poisson_bound,
    quick_binomial_bound,
    quick_poisson_bound,
)
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams

BOOK = load_rules()
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MONTH = 8640  # windows
USUAL = {"payment_attempts": 30_000, "payments_failed": 1200}  # 30 days at 4%


def window(now=None, last_30m=None, last_2h=None, history=None, windows_30d=MONTH,
           same_hour=None, windows_same_hour=0, amounts=()) -> Window:  # fmt: skip
    return Window(
        start=START, current=now or {}, last_30m=last_30m or {}, last_2h=last_2h or {},
        history_30d=history or {}, windows_30d=windows_30d, same_hour=same_hour or {},
        windows_same_hour=windows_same_hour, amounts=list(amounts),
    )  # fmt: skip


def fires(r: Reading) -> bool:
    if r.bound is None:
        return False
    return r.observed >= r.bound if r.bound_kind == "above" else r.observed <= r.bound


def rule(name: str, **changes: object) -> RuleDefinition:
    return BOOK.rules[name].model_copy(update=changes)


# --- the bound is the decision ------------------------------------------------------------


def failures(minutes: int, attempts: int, metric: str = "payments_failed") -> list[Window]:
    """Every failed count of one window length, the others calm."""
    at = {5: "now", 30: "last_30m", 120: "last_2h"}[minutes]
    sweep = []
    for failed in range(attempts + 1):
        counted = {"payment_attempts": attempts, "payments_failed": failed, metric: failed}
        sweep.append(window(**{at: counted}, history=USUAL))
    return sweep


def refunds(history: int = 0, sold_last_2h: int = 0, metric: str = "refunds") -> list[Window]:
    return [
        window(last_30m={metric: n}, last_2h={"payments_succeeded": sold_last_2h},
               history={metric: history, "payments_succeeded": 20_000})
        for n in range(40)
    ]  # fmt: skip


def currency(largest: float, typical: float = 3000, sigma: float = 1.0) -> AmountWindow:
    """USD's largest of a window's 104 payments, against 30 days of 30,000 a day."""
    n, mu = 900_000, math.log(typical)
    return AmountWindow(
        "usd", 104, round(largest), "evt_big", history_payments=n,
        history_amount=round(n * typical * math.exp(sigma**2 / 2)), spread_payments=n,
        spread_windows=MONTH, spread_log_amount=n * mu,
        spread_log_amount_sq=(n - 1) * sigma**2 + n * mu**2,
    )  # fmt: skip


def silent(same_hour_events: int) -> list[Window]:
    return [
        window(last_30m={"events": n}, same_hour={"events": same_hour_events},
               windows_same_hour=36)
        for n in range(3)
    ]  # fmt: skip


RAISED = Strengths(low=2, medium=3, high=4)
FAILURES = "payment_failure_spike"


def alone(minutes: int, **changes: object) -> RuleDefinition:
    """The failure rule judging one window length: no shorter window gates it."""
    return rule(FAILURES, window_minutes=[minutes], **changes)


@pytest.mark.parametrize(
    ("name", "definition", "sweep"),
    [
        pytest.param(FAILURES, alone(5), failures(5, 40),
                     id="failures over 5 minutes among 40 attempts"),
        pytest.param(FAILURES, alone(5), failures(5, 4),
                     id="a small shop: the min_failed floor is the bound"),
        pytest.param(FAILURES, alone(120), failures(120, 2500),
                     id="2 hours of a busy shop: 2,500 attempts"),
        pytest.param(FAILURES, alone(30), failures(30, 300, "payments_failed_processing"),
                     id="processing errors fire long before all failures do"),
        pytest.param(FAILURES, alone(5, severity_at=RAISED), failures(5, 40),
                     id="a raised low severity moves the bound up"),
        pytest.param("refund_spike", BOOK.rules["refund_spike"], refunds(),
                     id="refunds where there were none: min_expected"),
        pytest.param("refund_spike", BOOK.rules["refund_spike"], refunds(2880),
                     id="refunds where 10 are usual per 30 minutes"),
        pytest.param("refund_spike", BOOK.rules["refund_spike"], refunds(400, 2000),
                     id="refunds following today's volume of payments"),
        pytest.param("refund_spike", rule("refund_spike", severity_at=RAISED), refunds(2880),
                     id="refunds: a raised low severity moves the bound up"),
        pytest.param("dispute_spike", BOOK.rules["dispute_spike"], refunds(0, metric="disputes"),
                     id="the first dispute in a quiet account: bound 1"),
        pytest.param("dispute_spike", BOOK.rules["dispute_spike"],
                     refunds(400, metric="disputes"), id="disputes where they are routine"),
        pytest.param("amount_spike", BOOK.rules["amount_spike"],
                     [window(amounts=[currency(3000 * k)]) for k in range(1, 300, 3)],
                     id="the largest payment against its currency's spread"),
        pytest.param("amount_spike", BOOK.rules["amount_spike"],
                     [window(amounts=[currency(2000 * k, 2000, 0.05)]) for k in range(1, 8)],
                     id="a tight currency: min_multiple is the bound"),
        pytest.param("webhook_integrity", BOOK.rules["webhook_integrity"],
                     [window(now={"invalid_attempts": n, "events_received": 5})
                      for n in range(10)], id="invalid signatures"),
        pytest.param("webhook_silence", BOOK.rules["webhook_silence"], silent(72),
                     id="silence where 12 events are expected: fires at 0 only"),
    ],
)  # fmt: skip
def test_a_reading_fires_exactly_where_its_decision_does(name, definition, sweep):
    decided = []
    for w in sweep:
        findings = evaluate(name, definition, w)
        read = readings(name, definition, w)
        assert bool(findings) == any(fires(r) for r in read), (w, read)
        for finding in findings:  # the series a finding names is drawn, past its bound
            chart = finding.evidence["chart"]
            (named,) = [r for r in read if (r.measure, r.scope) == tuple(chart.values())]
            assert fires(named)
        decided.append(bool(findings))
    assert False in decided and True in decided  # the sweep crosses the bound


def test_where_too_little_traffic_is_expected_silence_has_no_bound():
    for w in silent(12):  # 2 events expected in 30 minutes
        (reading,) = readings("webhook_silence", BOOK.rules["webhook_silence"], w)
        assert reading.bound is None and reading.expected == 2
        assert evaluate("webhook_silence", BOOK.rules["webhook_silence"], w) == []


def test_a_long_window_past_its_bound_is_quiet_once_failures_stopped():
    # The documented caveat: 2 hours still hold an outage's failures, the last 30 minutes none.
    w = window(now={"payment_attempts": 100}, last_30m={"payment_attempts": 600},
               last_2h={"payment_attempts": 2400, "payments_failed": 600},
               history=USUAL)  # fmt: skip
    definition = BOOK.rules[FAILURES]
    (two_hours,) = [r for r in readings(FAILURES, definition, w) if r.measure == "failed_120m"]
    assert fires(two_hours)
    assert evaluate(FAILURES, definition, w) == []


def test_readings_say_what_they_measure():
    w = window(now={"payment_attempts": 100, "payments_failed": 4},
               last_30m={"payment_attempts": 600, "payments_failed": 24, "events": 9},
               last_2h={"payment_attempts": 2400, "payments_failed": 96},
               history=USUAL,
               amounts=[currency(9000), replace(currency(5), currency="jpy")])  # fmt: skip
    read = {(r.rule, r.scope, r.measure): r for name, definition in BOOK.enabled().items()
            for r in readings(name, definition, w)}  # fmt: skip
    thirty = read["payment_failure_spike", "all", "failed_30m"]
    assert (thirty.label, thirty.observed, thirty.expected) == ("failed payments in 30 min", 24, 24)
    assert {m for r, _, m in read if r == "payment_failure_spike"} == {
        f"{what}_{m}m" for what in ("failed", "processing") for m in (5, 30, 120)
    }
    assert read["payment_failure_spike", "all", "failed_120m"].label == "failed payments in 2 h"
    usd, jpy = read["amount_spike", "usd", "max_amount"], read["amount_spike", "jpy", "max_amount"]
    assert usd.label == "largest payment in 5 min (USD, minor units)" and usd.observed == 9000
    assert usd.expected == pytest.approx(3000)
    assert jpy.label == "largest payment in 5 min (JPY)"
    assert read["dispute_spike", "all", "count_30m"].label == "disputes in 30 min"
    silence = read["webhook_silence", "all", "events_30m"]  # a month without events
    assert (silence.observed, silence.expected, silence.bound, silence.bound_kind) == (
        9, 0, None, "below",
    )  # fmt: skip
    assert ("webhook_gap", "all") not in {(r, s) for r, s, _ in read}


def test_a_disabled_rule_reads_nothing():
    assert readings("refund_spike", rule("refund_spike", enabled=False), refunds()[-1]) == []


# The bounds a reading computes in one pass are the bisection's, at every size.
_random = random.Random(14)
TAILS = [(n, p, a) for n in (0, 1, 3, 4, 40, 600, 2500, 30_000)
         for p in (1e-4, 0.002, 0.04, 0.5, 0.999) for a in (0.02 / 1728, 1e-9, 0.3)] + [
    (_random.randint(1, 20_000), _random.uniform(1e-4, 0.999), 10 ** _random.uniform(-12, -1))
    for _ in range(300)
]  # fmt: skip


def test_the_one_pass_bounds_are_the_bisections():
    for n, p, alpha in TAILS:
        assert quick_binomial_bound(n, p, alpha) == binomial_bound(n, p, alpha), (n, p, alpha)
        mean = n * p + 0.02
        assert quick_poisson_bound(mean, alpha) == poisson_bound(mean, alpha), (mean, alpha)


# --- stored by every evaluation -----------------------------------------------------------

T0 = datetime(2026, 3, 2, tzinfo=UTC)
FIVE = timedelta(minutes=5)
SPIKE = T0 + timedelta(hours=5)
END = T0 + timedelta(hours=8)


def evaluate_stored(url: str, start: datetime, end: datetime, rolled_from: datetime | None = None):
    """What the two rule assets do for [start, end): roll up, then one evaluation pass."""
    with psycopg.connect(url) as conn:
        metrics_sql.roll_up(conn, rolled_from or start, end)
        return evaluate_range(conn, BOOK, start, end, "medium")


def stored(db, rule_: str, measure: str, scope: str = "all") -> dict[datetime, tuple]:
    rows = db.execute(
        "SELECT window_start, observed, expected, bound, bound_kind FROM rule_readings"
        " WHERE rule = %s AND scope = %s AND measure = %s ORDER BY window_start",
        (rule_, scope, measure),
    ).fetchall()
    return {start: tuple(rest) for start, *rest in rows}


def opening(db, rule_: str) -> tuple[datetime, dict]:
    """The window that opened the rule's anomaly, and the chart its evidence names."""
    return db.execute(
        "SELECT w.window_start, w.evidence -> 'chart' FROM anomaly_windows w"
        " JOIN anomalies a ON a.id = w.anomaly_id"
        " WHERE a.rule = %s ORDER BY w.window_start LIMIT 1",
        (rule_,),
    ).fetchone()


@pytest.fixture
def failure_spike(database_url):
    """Eight hours of steady payments, with a 30-minute failure spike at 05:00."""
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    streams.store(database_url, streams.failure_spike(SPIKE, minutes=30))


class TestStoredReadings:
    def test_the_window_that_opened_a_failure_spike_reads_past_its_bound(
        self, database_url, db, failure_spike
    ):
        evaluate_stored(database_url, T0, END)

        opened, chart = opening(db, "payment_failure_spike")
        assert opened == SPIKE and chart["scope"] == "all"
        series = stored(db, "payment_failure_spike", chart["measure"])
        observed, _, bound, kind = series[opened]
        assert kind == "above" and observed >= bound
        # Before it, the calm windows read under their bounds, expecting the usual 5% (a young
        # account: the default rate) of their attempts.
        attempts = dict(db.execute(
            "SELECT window_start, sum(payment_attempts) OVER (ORDER BY window_start"
            " RANGE BETWEEN interval '25 minutes' PRECEDING AND CURRENT ROW) FROM window_metrics"
        ).fetchall())  # fmt: skip
        calm = {at: r for at, r in stored(db, "payment_failure_spike", "failed_30m").items()
                if T0 + timedelta(minutes=30) <= at < SPIKE}  # fmt: skip
        assert len(calm) == 54
        for at, (observed, expected, bound, _) in calm.items():
            assert observed < bound
            assert expected == pytest.approx(0.05 * attempts[at])

    def test_every_window_and_enabled_rule_is_read_and_a_rerun_changes_no_row(
        self, database_url, db, failure_spike
    ):
        result = evaluate_stored(database_url, T0, END)
        count = "SELECT rule, count(*) FROM rule_readings GROUP BY 1 ORDER BY 1"
        rows = ("SELECT rule, scope, measure, window_start, label, observed, expected, bound,"
                " bound_kind FROM rule_readings ORDER BY 1, 2, 3, 4")  # fmt: skip
        first, first_rows = db.execute(count).fetchall(), db.execute(rows).fetchall()

        again = evaluate_stored(database_url, T0, END)
        evaluate_stored(database_url, SPIKE, SPIKE + 3 * FIVE)

        assert db.execute(rows).fetchall() == first_rows
        assert db.execute(count).fetchall() == first == [
            ("amount_spike", 96), ("churn_spike", 96), ("dispute_spike", 96),
            ("payment_failure_spike", 96 * 6), ("refund_spike", 96), ("webhook_integrity", 96),
            ("webhook_silence", 96),
        ]  # fmt: skip
        assert result.readings == again.readings == 96 * 12

    def test_a_refund_spike_reads_past_its_bound_where_it_opened(self, database_url, db):
        streams.store(database_url, streams.normal_traffic(T0, hours=3))
        burst = T0 + timedelta(hours=2)
        events = [e for n in range(8) for e in streams.refund(burst + n * timedelta(seconds=20),
                                                              f"burst{n}")]  # fmt: skip
        streams.store(database_url, events)
        evaluate_stored(database_url, T0, T0 + timedelta(hours=3))

        opened, chart = opening(db, "refund_spike")
        assert (opened, chart) == (burst, {"measure": "count_30m", "scope": "all"})
        series = stored(db, "refund_spike", "count_30m")
        assert series[opened][0] == 8 and series[opened][0] >= series[opened][2]
        before = [r for at, r in series.items() if at < burst]
        assert before and all(observed == 0 < bound for observed, _, bound, _ in before)

    def test_a_large_payment_reads_in_its_currency_and_minor_units(self, database_url, db):
        # A day of 10.00 to 14.99 USD (the history an amount needs), then one of 1,000.00 USD.
        large = T0 + 292 * FIVE
        events = []
        for w in range(292):
            for p in range(2):
                amount = 1000 + (w * 37 + p * 250) % 500
                events += streams.succeeded_payment(T0 + w * FIVE + timedelta(seconds=p),
                                                    f"d{w}_{p}", amount)  # fmt: skip
        events += streams.succeeded_payment(large + timedelta(seconds=30), "large", 100_000)
        streams.store(database_url, events)
        evaluate_stored(database_url, large - FIVE, large + FIVE, rolled_from=T0)

        opened, chart = opening(db, "amount_spike")
        assert (opened, chart) == (large, {"measure": "max_amount", "scope": "usd"})
        series = stored(db, "amount_spike", "max_amount", "usd")
        observed, expected, bound, _ = series[large]
        assert observed == 100_000 and 1100 < expected < 1300 and bound <= observed
        observed, _, bound, _ = series[large - FIVE]
        assert observed < 1500 < bound

    def test_silence_reads_below_where_traffic_is_expected(self, database_url, db):
        # 12:00-13:00 of the two weeks before: two payments (four events) every 5 minutes.
        for week in (0, 7):
            hour = T0 + timedelta(days=week, hours=12)
            events = [e for w in range(12) for p in range(2)
                      for e in streams.succeeded_payment(hour + w * FIVE + timedelta(seconds=p),
                                                         f"h{week}_{w}_{p}")]  # fmt: skip
            streams.store(database_url, events)
        quiet = T0 + timedelta(days=14, hours=12)
        evaluate_stored(database_url, quiet - timedelta(hours=1), quiet + timedelta(hours=1),
                        rolled_from=T0)  # fmt: skip

        opened, chart = opening(db, "webhook_silence")
        assert chart == {"measure": "events_30m", "scope": "all"}
        series = stored(db, "webhook_silence", "events_30m")
        assert series[opened] == (0, pytest.approx(24), 0, "below")
        # The hour before had no traffic in its own history: nothing to be silent against.
        assert series[quiet - FIVE][2] is None
