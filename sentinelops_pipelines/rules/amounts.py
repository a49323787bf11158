"""Amount rule: a successful payment improbably large for its currency's own distribution.

Payment amounts are heavy-tailed (roughly log-normal): a payment 9x the average is ordinary
among thousands a day, so a multiple of the average is no measure of surprise. The rule fits
ln(amount) over the 30 days before the window (mean μ, standard deviation σ, from the rollup's
sums) and asks how likely the largest of the window's n payments is to reach its amount:
p = 1 - (1 - q)^n, with q the normal upper tail at z = (ln x - μ) / σ. It fires when p is
within the bound its daily budget allows (shared by the currencies judged in the window) and
the payment is at least `min_multiple` times the geometric mean.

A currency whose history has no spread yet stays quiet: a first payment in a new currency,
history rolled up before migration 0008 (the squares are missing until a backfill), or a
currency whose every payment had the same amount (σ = 0).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from sentinelops.money import format_amount
from sentinelops_pipelines.rules.definitions import AmountRule
from sentinelops_pipelines.rules.model import AmountWindow, Finding, Window
from sentinelops_pipelines.rules.significance import normal_sf, per_test, reported, strength


def log_moments(a: AmountWindow) -> tuple[float, float] | None:
    """Mean and standard deviation of ln(amount) over the history with a spread; None when
    there is no spread to judge by."""
    n = a.spread_payments
    if n < 2:
        return None
    mean = a.spread_log_amount / n
    variance = (a.spread_log_amount_sq - a.spread_log_amount * mean) / (n - 1)
    # Identical amounts leave only rounding in the difference of the sums.
    if variance <= 1e-9 * max(1.0, mean * mean):
        return None
    return mean, math.sqrt(variance)


def max_tail(z: float, n: int) -> float:
    """P(the largest of n independent normal draws reaches z)."""
    q = normal_sf(z)
    return 1.0 if q >= 1 else -math.expm1(n * math.log1p(-q))


def _z_at(p: float, n: int) -> float:
    """The z at which the largest of n draws has tail probability p: max_tail inverted."""
    return -NormalDist().inv_cdf(-math.expm1(math.log1p(-p) / n))


def _odds(p: float) -> str:
    if p < 1e-12:
        return "under 1 in a trillion"
    odds = 1 / p
    digits = max(0, math.floor(math.log10(odds)) - 1)
    return f"1 in {round(odds, -digits):,.0f}"


def baseline(rule: AmountRule, a: AmountWindow, account_windows: int) -> tuple[float, float] | None:
    """μ and σ of the currency's log amounts when its history is enough to judge by: enough
    payments with a spread (see `log_moments`), in an account with `min_history_windows` of
    history (a currency paid a few times a day has far fewer windows of its own)."""
    if a.spread_payments < rule.min_history_payments:
        return None
    if account_windows < rule.min_history_windows:
        return None
    return log_moments(a)


def amount_at_bound(rule: AmountRule, mean: float, sd: float, n: int, alpha: float) -> float:
    """The smallest largest-of-`n` payment that fires at tail bound `alpha` (Stripe's minor
    units): improbable under the log-normal fit and at least `min_multiple` of its geometric
    mean."""
    return max(rule.min_multiple * math.exp(mean), math.exp(mean + sd * _z_at(alpha, n)))


def judged_currencies(
    rule: AmountRule, w: Window
) -> tuple[list[tuple[AmountWindow, tuple[float, float]]], float]:
    """The window's currencies with a baseline to judge by (with its μ and σ), and the tail
    bound each decision gets: the rule's daily budget is shared among them, so more currencies
    do not mean more false alarms."""
    judged = [(a, m) for a in w.amounts if (m := baseline(rule, a, w.windows_30d)) is not None]
    return judged, per_test(rule.false_alarms_per_day, len(judged))


def judge(
    rule: AmountRule, a: AmountWindow, mean: float, sd: float, alpha: float
) -> tuple[float, dict[str, Any]] | None:
    """How far past the bound this currency's largest payment is, with the evidence; None when
    it is no finding: under `min_multiple` of the geometric mean, or not improbable enough."""
    geometric = math.exp(mean)
    x, n = a.amount_max, max(a.payments, 1)
    if x < rule.min_multiple * geometric:
        return None
    z = (math.log(x) - mean) / sd
    p_value = max_tail(z, n)
    if p_value > alpha:
        return None
    average = a.history_amount / a.history_payments
    at_bound = amount_at_bound(rule, mean, sd, n, alpha)
    surprise = strength(p_value, alpha)
    return surprise, {
        "currency": a.currency,
        "amount": x,
        "event_id": a.max_event_id,
        "multiple_of_average": round(x / average, 2),
        "multiple_of_geometric_mean": round(x / geometric, 2),
        "z": round(z, 2),
        "p_value": reported(p_value),
        "bound": reported(alpha),
        "strength": round(surprise, 2),
        "payments_in_window": a.payments,
        "amount_at_bound": round(at_bound, 2),  # the smallest largest payment that would fire
        "baseline": {
            "average": round(average, 2),
            "geometric_mean": round(geometric, 2),
            "log_mean": round(mean, 4),
            "log_sd": round(sd, 4),
            "payments": a.spread_payments,
            "windows": a.spread_windows,
            "source": "30_day_log_normal",
        },
        "thresholds": {
            "false_alarms_per_day": rule.false_alarms_per_day,
            "min_multiple": rule.min_multiple,
            "min_history_payments": rule.min_history_payments,
            "min_history_windows": rule.min_history_windows,
            "severity_at": rule.severity_at.model_dump(),
        },
        "sample_event_ids": [a.max_event_id],
    }


def amount_spike(name: str, rule: AmountRule, w: Window) -> list[Finding]:
    judged, alpha = judged_currencies(rule, w)
    findings = []
    for a, (mean, sd) in judged:
        verdict = judge(rule, a, mean, sd, alpha)
        if verdict is None:
            continue
        surprise, evidence = verdict
        severity = rule.severity_at.severity(surprise)
        if severity is None:
            continue
        evidence["currencies_judged"] = len(judged)
        # The series a chart of it draws (rule_readings).
        evidence["chart"] = {"measure": "max_amount", "scope": a.currency}
        usual = format_amount(evidence["baseline"]["geometric_mean"], a.currency)
        title = (
            f"A payment of {format_amount(a.amount_max, a.currency)} is far above usual for"
            f" {a.currency.upper()} ({_odds(evidence['p_value'])}; usual {usual})"
        )
        findings.append(Finding(rule=name, scope=a.currency, severity=severity,
                                window_start=w.start, title=title, evidence=evidence))  # fmt: skip
    return findings
