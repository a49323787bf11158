"""Rule tables: each case says why it exists. Pure functions, no database."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import AmountWindow, Window

BOOK = load_rules()
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
USUAL = {"payment_attempts": 3000, "payments_failed": 120}  # 30 days at 4%


def window(now=None, last_30m=None, history=None, windows_30d=0, same_hour=None,
           windows_same_hour=0, amounts=()) -> Window:  # fmt: skip
    return Window(
        start=START, current=now or {}, last_30m=last_30m or now or {},
        history_30d=history or {}, windows_30d=windows_30d, same_hour=same_hour or {},
        windows_same_hour=windows_same_hour, amounts=list(amounts),
    )  # fmt: skip


def severity(rule: str, w: Window, book=BOOK) -> str | None:
    findings = evaluate(rule, book.rules[rule], w)
    assert len(findings) <= 1
    return findings[0].severity if findings else None


def attempts(n30, f30, n5, f5, n2h=None, f2h=None, history=USUAL, windows=8640):
    return Window(
        start=START, current={"payment_attempts": n5, "payments_failed": f5},
        last_30m={"payment_attempts": n30, "payments_failed": f30},
        last_2h={"payment_attempts": n2h or n30, "payments_failed": f2h or f30},
        history_30d=history, windows_30d=windows, same_hour={}, windows_same_hour=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("w", "expected"),
    [
        pytest.param(attempts(600, 130, 100, 25), "high", id="22% of 600 where 4% is usual"),
        pytest.param(attempts(10, 8, 4, 4), "high",
                     id="a small shop's broken checkout: no attempt floor hides it"),
        pytest.param(attempts(4, 4, 1, 1), "low", id="four of four: past the bound, barely"),
        pytest.param(attempts(4, 4, 1, 1, 16, 16), "high", id="two hours of it: high"),
        pytest.param(attempts(10, 2, 10, 2), None, id="2 of 10 happens by chance"),
        pytest.param(attempts(30, 6, 5, 1), None, id="6 of 30 happens by chance"),
        pytest.param(attempts(1, 1, 1, 1), None, id="a single failed payment at night"),
        pytest.param(attempts(60, 30, 15, 10, history={"payment_attempts": 1000,
                              "payments_failed": 400}), None,
                     id="a high rate that is usual here stays quiet"),
        pytest.param(attempts(60, 0, 15, 0), None, id="fewer failures than usual never fires"),
        pytest.param(attempts(6000, 300, 1000, 50, 24000, 1150), None,
                     id="significant but small (5% where 4% is usual): under the effect floor"),
    ],
)  # fmt: skip
def test_payment_failure_spike(w, expected):
    assert severity("payment_failure_spike", w) == expected


def test_a_failure_spike_says_its_bound_and_probability_per_window():
    (finding,) = evaluate("payment_failure_spike", BOOK.rules["payment_failure_spike"],
                          attempts(600, 130, 100, 25))  # fmt: skip
    windows = finding.evidence["windows"]
    assert set(windows) == {"5m", "30m", "120m"}
    thirty = windows["30m"]
    assert (thirty["attempts"], thirty["failed"], thirty["expected_failed"]) == (600, 130, 24.0)
    # The bound is the failed count the window needed: past chance and past the effect floor
    # (4% + 5 points of 600 = 54), and 130 is far past it.
    assert thirty["bound"] == 54 and thirty["breached"]
    assert thirty["p_value"] < 1e-40 and thirty["strength"] > 3
    # The day's budget over 288 windows, three lengths and two measures (all failures, and
    # failures with processing errors); half of it, since the early looks spend the other half.
    thresholds = finding.evidence["thresholds"]
    assert thresholds["per_window_bound"] == pytest.approx(0.02 / 1728 / 2, 1e-2)
    assert thresholds["early_looks"] == {"share": 0.5, "looks_per_window": 4}
    assert "130 of 600" in finding.title


def with_baselines(same_hour=(0, 0), windows_same_hour=0, history=(0, 0), windows=0) -> Window:
    """A failure spike over 30 and 5 minutes, with (attempts, failed) of each history."""
    spike = {"payment_attempts": 60, "payments_failed": 30}
    return window(
        now={"payment_attempts": 15, "payments_failed": 10}, last_30m=spike,
        same_hour=dict(zip(spike, same_hour, strict=True)), windows_same_hour=windows_same_hour,
        history=dict(zip(spike, history, strict=True)), windows_30d=windows,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("w", "baseline"),
    [
        pytest.param(with_baselines((400, 40), 36, (2000, 100), 8640),
                     {"rate": 0.1, "source": "same_hour_of_week", "attempts": 400},
                     id="the same hour of week first, when four weeks hold enough attempts"),
        pytest.param(with_baselines((100, 40), 36, (2000, 100), 8640),
                     {"rate": 0.05, "source": "30_day_average", "attempts": 2000},
                     id="too few attempts at this hour: the 30 days"),
        pytest.param(with_baselines((400, 40), 12, (2000, 100), 8640),
                     {"rate": 0.05, "source": "30_day_average", "attempts": 2000},
                     id="too few weeks of this hour: the 30 days"),
        pytest.param(with_baselines(history=(300, 30), windows=300),
                     {"rate": 0.1, "source": "30_day_average", "attempts": 300},
                     id="a young account's first day counts"),
        pytest.param(with_baselines(history=(300, 30), windows=100),
                     {"rate": 0.05, "source": "default", "attempts": 0},
                     id="under min_history_windows: the default rate"),
        pytest.param(with_baselines(history=(150, 60), windows=8640),
                     {"rate": 0.05, "source": "default", "attempts": 0},
                     id="too few attempts anywhere: the default rate"),
    ],
)  # fmt: skip
def test_payment_failure_baseline(w, baseline):
    (finding,) = evaluate("payment_failure_spike", BOOK.rules["payment_failure_spike"], w)
    assert finding.evidence["baseline"] == baseline


def counts(metric, n, history=0, windows=0, same_hour=0, windows_same_hour=0):
    return window(
        last_30m={metric: n}, history={metric: history}, windows_30d=windows,
        same_hour={metric: same_hour}, windows_same_hour=windows_same_hour,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "w", "expected"),
    [
        pytest.param("refund_spike", counts("refunds", 2), None, id="refunds under the minimum"),
        pytest.param("refund_spike", counts("refunds", 6), "low",
                     id="six refunds where there are none"),
        pytest.param("refund_spike", counts("refunds", 10, history=864, windows=1728), None,
                     id="ten where three are usual happens by chance"),
        pytest.param("refund_spike", counts("refunds", 20, history=864, windows=1728), "medium",
                     id="twenty where three are usual does not"),
        pytest.param("refund_spike", counts("refunds", 10, history=10, windows=1728,
                                            same_hour=108, windows_same_hour=36), None,
                     id="a busy hour of the week is not a spike"),
        pytest.param("dispute_spike", counts("disputes", 1), "low",
                     id="first dispute in a quiet account"),
        pytest.param("dispute_spike", counts("disputes", 1, history=100, windows=2000), None,
                     id="one dispute where they are routine"),
        pytest.param("dispute_spike", counts("disputes", 5, history=10, windows=2000), "medium",
                     id="a burst of disputes"),
    ],
)  # fmt: skip
def test_count_spikes(rule, w, expected):
    assert severity(rule, w) == expected


def test_churn_adds_cancellations_and_failed_invoices():
    w = window(last_30m={"subscriptions_cancelled": 3, "invoice_payments_failed": 3})
    finding = evaluate("churn_spike", BOOK.rules["churn_spike"], w)[0]
    assert finding.evidence["count"] == 6
    assert "cancellations and failed invoice payments" in finding.title


def test_churn_expects_the_sum_of_both_baselines_and_shows_each():
    # 30 days of 5-minute windows: 1 cancellation and 2 failed invoices per 6 windows (30 min).
    windows = 8640
    history = {"subscriptions_cancelled": windows / 6, "invoice_payments_failed": windows / 3}
    w = window(last_30m={"subscriptions_cancelled": 9, "invoice_payments_failed": 9},
               history=history, windows_30d=windows)  # fmt: skip
    (finding,) = evaluate("churn_spike", BOOK.rules["churn_spike"], w)
    baseline = finding.evidence["baseline"]
    assert baseline["expected"] == 3.0 and baseline["source"] == "30_day_average"
    assert baseline["by_metric"] == {"subscriptions_cancelled": 1.0, "invoice_payments_failed": 2.0}
    assert "(usually 3.0)" in finding.title


DAY = 288  # windows


def currency(code, largest, typical, sigma=1.0, per_day=30_000, days=30, spread_days=None):
    """One currency's window, its largest payment among a window's share of `per_day`, against
    `days` of log-normal history: geometric mean `typical` (minor units), log spread `sigma`.
    Only the last `spread_days` (default all) were rolled up since migration 0008."""
    n, mu = per_day * days, math.log(typical)
    spread_days = days if spread_days is None else spread_days
    s = round(per_day * spread_days)
    return AmountWindow(
        code, max(1, round(per_day / DAY)), round(largest), "evt_big",
        history_payments=n, history_amount=round(n * typical * math.exp(sigma**2 / 2)),
        spread_payments=s, spread_windows=round(DAY * spread_days), spread_log_amount=s * mu,
        spread_log_amount_sq=(s - 1) * sigma**2 + s * mu**2,
    )  # fmt: skip


def average(typical, sigma=1.0):
    return typical * math.exp(sigma**2 / 2)  # of a log-normal


def judged(amounts: list[AmountWindow]) -> Window:
    """A window with these currencies, in an account with as much history as the first has
    rolled up since migration 0008."""
    return window(amounts=amounts, windows_30d=amounts[0].spread_windows)


# Cause 4 (issue 14). The old rule fired at 5x the 30-day average (factors low 5, medium 10,
# high 25), so 8.7x was a low anomaly; among 30,000 log-normal payments a day (sigma 1) a window's
# largest of 104 reaches 8.7x the average with probability 1 - (1 - 0.0039)^104 = 0.33.
@pytest.mark.parametrize(
    ("w", "expected"),
    [
        pytest.param(currency("usd", 8.7 * average(3000), 3000), None,
                     id="cause 4: 8.7x the average is ordinary among 30,000 a day"),
        pytest.param(currency("usd", 8.7 * average(3000), 3000, per_day=2000), None,
                     id="cause 4: and among 2,000 a day (p 0.027)"),
        pytest.param(currency("usd", 100 * average(3000), 3000), "low",
                     id="100x the average beside it is found (p 1.7e-5)"),
        pytest.param(currency("eur", 100 * average(4500), 4500, per_day=2000), "medium",
                     id="100x the average in EUR at 2,000 a day (p 1.2e-6)"),
        pytest.param(currency("jpy", 100 * average(5000, 0.8), 5000, 0.8, per_day=2000), "high",
                     id="100x the average in JPY, zero-decimal (p 2.6e-9)"),
        pytest.param(currency("jpy", 50 * 5000, 5000, 0.8, per_day=2000), "medium",
                     id="50x the usual in JPY (p 3.5e-6)"),
        pytest.param(currency("gbp", 2 * 2000, 2000, 0.05), None,
                     id="a tight currency's 2x is improbable but under min_multiple"),
        pytest.param(currency("gbp", 30 * 2000, 2000, 0.3), "high",
                     id="a tight currency's 30x"),
        pytest.param(currency("chf", 100_000, 1, days=0), None,
                     id="a first payment in a new currency"),
        pytest.param(currency("eur", 1000 * average(4500), 4500, spread_days=0), None,
                     id="history rolled up before migration 0008 has no spread: quiet"),
        pytest.param(currency("eur", 100 * average(4500), 4500, per_day=2000, spread_days=2),
                     "medium", id="two days rolled up since the migration are enough"),
        pytest.param(currency("eur", 1000 * average(4500), 4500, 0.0), None,
                     id="every payment the same amount: no spread to judge by"),
        pytest.param(currency("eur", 1000 * average(4500), 4500, per_day=40, days=1), None,
                     id="too little history to judge"),
        pytest.param(currency("eur", 1000 * average(4500), 4500, days=0.3), None,
                     id="history shorter than a day"),
    ],
)  # fmt: skip
def test_amount_spike(w, expected):
    assert severity("amount_spike", judged([w])) == expected


def test_a_currency_paid_a_few_times_a_day_is_judged_in_an_account_with_a_month():
    # ~4 JPY payments a day: ~120 windows of its own in 30 days, under min_history_windows
    # (288), in an account with 8,640 windows of history. Before, never judged.
    jpy = currency("jpy", 80 * average(5000, 0.8), 5000, 0.8, per_day=4)
    jpy = replace(jpy, spread_windows=120)
    assert severity("amount_spike", window(amounts=[jpy], windows_30d=30 * DAY)) is not None
    assert severity("amount_spike", window(amounts=[jpy], windows_30d=DAY // 2)) is None


def test_amount_spike_says_how_improbable_in_the_currency_units():
    w = judged([currency("jpy", 100 * average(5000, 0.8), 5000, 0.8, per_day=2000)])
    (finding,) = evaluate("amount_spike", BOOK.rules["amount_spike"], w)
    assert finding.scope == "jpy"
    assert finding.title == (
        "A payment of 688,564 JPY is far above usual for JPY (1 in 380,000,000; usual 5,000 JPY)"
    )
    e = finding.evidence
    assert (e["event_id"], e["amount"], e["payments_in_window"]) == ("evt_big", 688_564, 7)
    assert e["multiple_of_average"] == 100.0 and e["z"] == 6.16
    assert e["p_value"] == 2.6e-9 and e["bound"] == 6.94e-5  # 0.02 a day over 288 windows
    assert e["baseline"] == {
        "average": 6885.64, "geometric_mean": 5000.0, "log_mean": 8.5172, "log_sd": 0.8,
        "payments": 60_000, "windows": 8640, "source": "30_day_log_normal",
    }  # fmt: skip
    assert e["thresholds"]["false_alarms_per_day"] == 0.02 and e["currencies_judged"] == 1
    assert e["thresholds"]["min_multiple"] == 3
    # The smallest largest-of-7 that would have fired: about 30x the usual.
    assert 150_000 < e["amount_at_bound"] < 155_000


def test_amount_spike_shares_its_budget_among_the_currencies_judged():
    usd = currency("usd", 90 * average(3000), 3000)  # p 3.0e-5 among 104 payments
    others = [currency(code, 4500, 4500, per_day=2000) for code in ("eur", "gbp", "chf")]
    assert severity("amount_spike", judged([usd])) == "low"  # bound 6.9e-5
    assert severity("amount_spike", judged([usd, *others])) is None  # bound 1.7e-5


@pytest.mark.parametrize(
    ("invalid", "verified", "expected"),
    [
        pytest.param(10, 0, "high", id="all traffic invalid: rotated secret or altered bodies"),
        pytest.param(10, 5, "medium", id="most traffic invalid"),
        pytest.param(10, 100, "low", id="some probing beside real traffic"),
        pytest.param(3, 0, None, id="a few strays stay quiet"),
    ],
)
def test_webhook_integrity(invalid, verified, expected):
    w = window(now={"invalid_attempts": invalid, "events_received": verified})
    assert severity("webhook_integrity", w) == expected


@pytest.mark.parametrize(
    ("w", "expected"),
    [
        pytest.param(window(same_hour={"events": 72}, windows_same_hour=36), "low",
                     id="silent where 12 events are expected"),
        pytest.param(window(same_hour={"events": 180}, windows_same_hour=36), "medium",
                     id="silent where 30 events are expected"),
        pytest.param(window(same_hour={"events": 3600}, windows_same_hour=36), "high",
                     id="silent in a busy hour"),
        pytest.param(window(last_30m={"events": 1}, same_hour={"events": 3600},
                            windows_same_hour=36), None, id="one event is not silence"),
        pytest.param(window(same_hour={"events": 12}, windows_same_hour=36), None,
                     id="a quiet hour is allowed to be quiet"),
        pytest.param(window(history={"events": 3000}, windows_30d=300), None,
                     id="too little history to expect anything"),
    ],
)  # fmt: skip
def test_webhook_silence(w, expected):
    assert severity("webhook_silence", w) == expected


def test_a_disabled_rule_never_fires(tmp_path):
    text = tmp_path / "rules.toml"
    from sentinelops_pipelines.rules.definitions import default_rules_text

    text.write_text(
        default_rules_text().replace(
            'kind = "failure_rate"', 'kind = "failure_rate"\nenabled = false'
        )
    )
    book = load_rules(text)
    assert severity("payment_failure_spike", attempts(60, 30, 15, 10), book) is None
    assert "payment_failure_spike" not in book.enabled()


def test_every_finding_records_the_definition_and_its_version():
    finding = evaluate("dispute_spike", BOOK.rules["dispute_spike"], counts("disputes", 1))[0]
    assert finding.evidence["rule_version"] == BOOK.rules["dispute_spike"].version
    assert finding.evidence["rule_definition"]["first_in_quiet_account"] == "low"


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param('[rules.x]\nkind = "count_spike"\nmetrics = ["refunds"]\nmin_count = 0\n'
                     'min_expected = 1\nfactors = { low = 2, medium = 3, high = 4 }',
                     id="min_count below 1"),
        pytest.param('[rules.x]\nkind = "count_spike"\nmetrics = ["refunds"]\nmin_count = 1\n'
                     'min_expected = 1\nfactors = { low = 5, medium = 3, high = 4 }',
                     id="factors not rising"),
        pytest.param('[rules.x]\nkind = "telepathy"', id="unknown kind"),
        pytest.param('[rules.x]\nkind = "integrity"\nmin_invalid = 5\nshare_medium = 0.5\n'
                     'treshold = 3', id="misspelt field"),
    ],
)  # fmt: skip
def test_invalid_definitions_are_refused_at_load(tmp_path, broken):
    path = tmp_path / "rules.toml"
    path.write_text(broken)
    with pytest.raises(ValueError, match="invalid rule definitions"):
        load_rules(path)


def test_one_busy_week_does_not_make_its_hour_silent_for_the_next_four():
    # 36 windows of this hour in four weeks: one week's card-testing night put 1,000 events in
    # it; the median week saw 2 per window (12 per 30 minutes, below min_expected 10 + margin).
    busy_once = Window(
        start=START, current={}, last_30m={}, history_30d={}, windows_30d=0,
        same_hour={"events": 1072}, windows_same_hour=36, same_hour_typical={"events": 36},
    )  # fmt: skip
    assert severity("webhook_silence", busy_once) is None
    every_week = replace(busy_once, same_hour_typical={"events": 1072})
    assert severity("webhook_silence", every_week) == "high"
