"""Rule tables: each case says why it exists. Pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import AmountWindow, Window

BOOK = load_rules()
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


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


def attempts(n30, f30, n5, f5, history=None, windows=0):
    return window(
        now={"payment_attempts": n5, "payments_failed": f5},
        last_30m={"payment_attempts": n30, "payments_failed": f30},
        history=history, windows_30d=windows,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("w", "expected"),
    [
        pytest.param(attempts(10, 8, 4, 4), None, id="low volume stays quiet however bad"),
        pytest.param(attempts(60, 30, 15, 10), "high", id="both windows breach: high"),
        pytest.param(attempts(60, 30, 5, 4), "medium", id="30-minute window only: medium"),
        pytest.param(attempts(60, 10, 12, 8), "low", id="5-minute window only: low"),
        pytest.param(attempts(60, 30, 15, 10, {"payment_attempts": 1000, "payments_failed": 400},
                              300), None, id="a high rate that is usual here stays quiet"),
        pytest.param(attempts(60, 0, 15, 0), None, id="fewer failures than usual never fires"),
        pytest.param(attempts(60, 9, 15, 2), None, id="15% with a 5% baseline is under 20%"),
    ],
)  # fmt: skip
def test_payment_failure_spike(w, expected):
    assert severity("payment_failure_spike", w) == expected


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
                     {"rate": 0.1, "source": "same_hour_of_week"},
                     id="the same hour of week first, when four weeks hold enough attempts"),
        pytest.param(with_baselines((100, 40), 36, (2000, 100), 8640),
                     {"rate": 0.05, "source": "30_day_average"},
                     id="too few attempts at this hour: the 30 days"),
        pytest.param(with_baselines((400, 40), 12, (2000, 100), 8640),
                     {"rate": 0.05, "source": "30_day_average"},
                     id="too few weeks of this hour: the 30 days"),
        pytest.param(with_baselines(history=(300, 30), windows=100),
                     {"rate": 0.1, "source": "30_day_average"},
                     id="a rate rests on attempts: a young account's 30 days count"),
        pytest.param(with_baselines(history=(150, 60), windows=8640),
                     {"rate": 0.05, "source": "default"},
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
        pytest.param("refund_spike", counts("refunds", 4), None, id="refunds under the minimum"),
        pytest.param("refund_spike", counts("refunds", 6), "high",
                     id="six refunds where there are none"),
        pytest.param("refund_spike", counts("refunds", 10, history=864, windows=1728), "low",
                     id="three times the 30-day average"),
        pytest.param("refund_spike", counts("refunds", 10, history=10, windows=1728,
                                            same_hour=108, windows_same_hour=36), None,
                     id="a busy hour of the week is not a spike"),
        pytest.param("dispute_spike", counts("disputes", 1), "low",
                     id="first dispute in a quiet account"),
        pytest.param("dispute_spike", counts("disputes", 1, history=100, windows=2000), None,
                     id="one dispute where they are routine"),
        pytest.param("dispute_spike", counts("disputes", 5, history=10, windows=2000), "high",
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


def amounts(amount, payments=100, average=1000, windows=300):
    return window(
        amounts=[
            AmountWindow(
                "usd", 1, amount, "evt_big", payments, payments * average, payments * 6.9, windows
            )
        ]
    )


@pytest.mark.parametrize(
    ("w", "expected"),
    [
        pytest.param(amounts(12_000), "medium", id="twelve times the average"),
        pytest.param(amounts(30_000), "high", id="thirty times the average"),
        pytest.param(amounts(4_000), None, id="four times is within normal spread"),
        pytest.param(amounts(30_000, payments=40), None, id="too little history to judge"),
        pytest.param(amounts(30_000, windows=100), None, id="history shorter than a day"),
    ],
)
def test_amount_spike(w, expected):
    assert severity("amount_spike", w) == expected


def test_amount_spike_reports_a_robust_statistic_and_the_event():
    finding = evaluate("amount_spike", BOOK.rules["amount_spike"], amounts(30_000))[0]
    assert finding.scope == "usd"
    assert finding.evidence["event_id"] == "evt_big"
    assert finding.evidence["baseline"]["geometric_mean"] < finding.evidence["baseline"]["average"]


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
        pytest.param(window(same_hour={"events": 180}, windows_same_hour=36), "low",
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
