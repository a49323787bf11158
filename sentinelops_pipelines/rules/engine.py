"""One evaluation path for every rule: window -> decision -> finding.

Each rule kind is a pure function of (name, definition, window). Windowing, baselines,
evidence bookkeeping and idempotency live outside the kinds, so no rule re-implements them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sentinelops_pipelines.rules.definitions import (
    AmountRule,
    CountRule,
    FailureRateRule,
    IntegrityRule,
    RuleDefinition,
    SilenceRule,
)
from sentinelops_pipelines.rules.model import Finding, Severity, Window

FAILURE_TYPES = ("charge.failed", "payment_intent.payment_failed")
PAYMENT_TYPES = (*FAILURE_TYPES, "charge.succeeded", "payment_intent.succeeded")
METRIC_TYPES = {
    "refunds": ("charge.refunded", "refund.created"),
    "disputes": ("charge.dispute.created",),
    "subscriptions_cancelled": ("customer.subscription.deleted",),
    "subscriptions_created": ("customer.subscription.created",),
    "invoice_payments_failed": ("invoice.payment_failed",),
    "payments_failed": FAILURE_TYPES,
    "payment_attempts": PAYMENT_TYPES,
}
LABELS = {
    "refunds": "refunds",
    "disputes": "disputes",
    "subscriptions_cancelled": "cancellations",
    "invoice_payments_failed": "failed invoice payments",
    "subscriptions_created": "new subscriptions",
    "payments_failed": "failed payments",
    "payment_attempts": "payment attempts",
    "events": "events",
}


# Stripe amounts are in the smallest unit; these currencies have none below the unit.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())


def money(amount: float, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,.0f} {currency.upper()}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def _rate(failed: int, attempts: int) -> float:
    return failed / attempts if attempts else 0.0


def _pct(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def failure_rate(name: str, rule: FailureRateRule, w: Window) -> list[Finding]:
    same_hour_attempts = w.same_hour.get("payment_attempts", 0)
    history_attempts = w.history_30d.get("payment_attempts", 0)
    if w.windows_same_hour >= rule.min_same_hour_windows and (
        same_hour_attempts >= rule.min_baseline_attempts
    ):
        base, source = (
            _rate(w.same_hour.get("payments_failed", 0), same_hour_attempts),
            ("same_hour_of_week"),
        )
    elif history_attempts >= rule.min_baseline_attempts:
        base, source = (
            _rate(w.history_30d.get("payments_failed", 0), history_attempts),
            ("30_day_average"),
        )
    else:
        base, source = rule.default_baseline_rate, "default"
    threshold = max(rule.min_rate, base * rule.rate_factor, base + rule.min_rate_increase)
    observed = {}
    for minutes, minimum in ((30, rule.min_attempts_30m), (5, rule.min_attempts_5m)):
        attempts = w.value("payment_attempts", minutes)
        failed = w.value("payments_failed", minutes)
        observed[f"{minutes}m"] = {
            "attempts": attempts,
            "failed": failed,
            "rate": round(_rate(failed, attempts), 4),
            "breached": attempts >= minimum and _rate(failed, attempts) >= threshold,
        }
    long, short = observed["30m"]["breached"], observed["5m"]["breached"]
    if not (long or short):
        return []
    severity: Severity = (
        rule.severity_both
        if long and short
        else rule.severity_30m_only
        if long
        else rule.severity_5m_only
    )
    shown = observed["30m"] if long else observed["5m"]
    title = (
        f"Payment failure rate {_pct(shown['rate'])} over {'30' if long else '5'} min"
        f" ({shown['failed']} of {shown['attempts']} payments; usual {_pct(base)})"
    )
    return [
        Finding(
            rule=name,
            scope="all",
            severity=severity,
            title=title,
            window_start=w.start,
            evidence={
                "windows": observed,
                "baseline": {"rate": round(base, 4), "source": source},
                "thresholds": {
                    "rate": round(threshold, 4),
                    "min_attempts_30m": rule.min_attempts_30m,
                    "min_attempts_5m": rule.min_attempts_5m,
                },
            },
            sample_types=FAILURE_TYPES,
            sample_since=w.start - timedelta(minutes=25) if long else w.start,
        )
    ]


def count_spike(name: str, rule: CountRule, w: Window) -> list[Finding]:
    minutes = rule.window_minutes
    count = sum(w.value(m, minutes) for m in rule.metrics)
    if count < rule.min_count:
        return []
    baselines = {
        m: w.baseline(m, rule.min_same_hour_windows, rule.min_history_windows) for m in rule.metrics
    }
    expected = sum(b.expected(minutes) for b in baselines.values())
    # Which history a baseline comes from depends on the window's history, not the metric.
    kind = next(iter(baselines.values()))
    floor = max(expected, rule.min_expected)
    severity = rule.factors.severity(count / floor)
    first_ever = sum(w.history_30d.get(m, 0) for m in rule.metrics) == 0
    if severity is None and first_ever and rule.first_in_quiet_account:
        severity = rule.first_in_quiet_account
    if severity is None:
        return []
    label = " and ".join(LABELS[m] for m in rule.metrics)
    title = f"{count} {label} in {minutes} min (usually {expected:.1f})"
    if first_ever:
        title = f"{count} {label} in {minutes} min, the first in 30 days"
    return [
        Finding(
            rule=name,
            scope="all",
            severity=severity,
            title=title,
            window_start=w.start,
            evidence={
                "count": count,
                "by_metric": {m: w.value(m, minutes) for m in rule.metrics},
                "window_minutes": minutes,
                "baseline": {
                    "expected": round(expected, 3),
                    "source": kind.source,
                    "history_windows": kind.windows,
                    "by_metric": {m: round(b.expected(minutes), 3) for m, b in baselines.items()},
                    "first_in_30_days": first_ever,
                },
                "thresholds": {
                    "min_count": rule.min_count,
                    "min_expected": rule.min_expected,
                    "factors": rule.factors.model_dump(),
                },
            },
            sample_types=tuple(t for m in rule.metrics for t in METRIC_TYPES.get(m, ())),
            sample_since=w.start - timedelta(minutes=minutes - 5),
        )
    ]


def amount_spike(name: str, rule: AmountRule, w: Window) -> list[Finding]:
    findings = []
    for a in w.amounts:
        if a.history_payments < rule.min_history_payments:
            continue
        if a.history_windows < rule.min_history_windows:
            continue
        average = a.history_amount / a.history_payments
        severity = rule.factors.severity(a.amount_max / average) if average > 0 else None
        if severity is None:
            continue
        geometric = math.exp(a.history_log_amount / a.history_payments)
        multiple = a.amount_max / average
        findings.append(
            Finding(
                rule=name,
                scope=a.currency,
                severity=severity,
                window_start=w.start,
                title=(
                    f"A payment of {money(a.amount_max, a.currency)} is {multiple:.1f}x"
                    f" the 30-day average of {money(average, a.currency)}"
                ),
                evidence={
                    "currency": a.currency,
                    "amount": a.amount_max,
                    "event_id": a.max_event_id,
                    "multiple_of_average": round(multiple, 2),
                    "baseline": {
                        "average": round(average, 2),
                        "geometric_mean": round(geometric, 2),
                        "payments": a.history_payments,
                        "windows": a.history_windows,
                        "source": "30_day_average",
                    },
                    "thresholds": {
                        "factors": rule.factors.model_dump(),
                        "min_history_payments": rule.min_history_payments,
                    },
                    "sample_event_ids": [a.max_event_id],
                },
            )
        )
    return findings


def integrity(name: str, rule: IntegrityRule, w: Window) -> list[Finding]:
    invalid, verified = w.value("invalid_attempts"), w.value("events_received")
    if invalid < rule.min_invalid:
        return []
    share = invalid / (invalid + verified)
    severity: Severity = (
        rule.severity_all_invalid
        if verified == 0
        else "medium"
        if share >= rule.share_medium
        else "low"
    )
    title = f"{invalid} webhook attempts failed verification in 5 min" + (
        " and none verified" if verified == 0 else f" ({_pct(share)} of attempts)"
    )
    return [
        Finding(
            rule=name,
            scope="all",
            severity=severity,
            title=title,
            window_start=w.start,
            evidence={
                "invalid_attempts": invalid,
                "verified_received": verified,
                "invalid_share": round(share, 4),
                "time_basis": "received_at",
                "thresholds": {"min_invalid": rule.min_invalid, "share_medium": rule.share_medium},
            },
        )
    ]


def silence(name: str, rule: SilenceRule, w: Window) -> list[Finding]:
    minutes = rule.window_minutes
    if w.value("events", minutes) > 0:
        return []
    baseline = w.baseline("events", rule.min_same_hour_windows, rule.min_history_windows)
    expected = baseline.expected(minutes)
    severity = None
    for level in ("low", "medium", "high"):
        if level in rule.min_expected and expected >= rule.min_expected[level]:  # type: ignore[index]
            severity = level
    if severity is None:
        return []
    return [
        Finding(
            rule=name,
            scope="all",
            severity=severity,
            window_start=w.start,  # type: ignore[arg-type]
            title=f"No Stripe events for {minutes} min where about {expected:.0f} are expected",
            evidence={
                "events": 0,
                "window_minutes": minutes,
                "baseline": {
                    "expected": round(expected, 2),
                    "source": baseline.source,
                    "history_windows": baseline.windows,
                },
                "thresholds": {"min_expected": rule.min_expected},
            },
        )
    ]


def not_window_based(name: str, rule: Any, w: Window) -> list[Finding]:
    # A webhook gap is found by reconciliation with Stripe's Events API (rules/gap.py), which
    # sees what never arrived; a window of stored events cannot show it.
    return []


KINDS: dict[str, Callable[[str, Any, Window], list[Finding]]] = {
    "failure_rate": failure_rate,
    "count_spike": count_spike,
    "amount_spike": amount_spike,
    "integrity": integrity,
    "silence": silence,
    "gap": not_window_based,
}


def evaluate(name: str, rule: RuleDefinition, window: Window) -> list[Finding]:
    """The findings of one rule on one window, each carrying the definition that made it."""
    if not rule.enabled:
        return []
    findings = KINDS[rule.kind](name, rule, window)
    stamp = {"rule_definition": rule.model_dump(mode="json"), "rule_version": rule.version}
    for finding in findings:
        finding.evidence.update(stamp)
    return findings
