"""Payment rules: the failure rate against its usual level, and payments far above the average
of their currency."""

from __future__ import annotations

import math
from datetime import timedelta

from sentinelops.money import format_amount
from sentinelops_pipelines.rules.definitions import AmountRule, FailureRateRule
from sentinelops_pipelines.rules.metrics import FAILURE_TYPES, percent
from sentinelops_pipelines.rules.model import Finding, Severity, Window


def _rate(failed: int, attempts: int) -> float:
    return failed / attempts if attempts else 0.0


def failure_rate(name: str, rule: FailureRateRule, w: Window) -> list[Finding]:
    # A rate rests on attempts, not windows: any 30 days holding min_baseline_attempts attempts
    # will do (min_history_windows is not applied), else the rule's default for a new account.
    history = w.history(
        rule.min_same_hour_windows, 0, {"payment_attempts": rule.min_baseline_attempts}
    )
    base, source = rule.default_baseline_rate, "default"
    if history is not None:
        failed, attempts = (
            history.totals.get(m, 0) for m in ("payments_failed", "payment_attempts")
        )
        base, source = _rate(failed, attempts), history.source
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
        f"Payment failure rate {percent(shown['rate'])} over {'30' if long else '5'} min"
        f" ({shown['failed']} of {shown['attempts']} payments; usual {percent(base)})"
    )
    evidence = {
        "windows": observed,
        "baseline": {"rate": round(base, 4), "source": source},
        "thresholds": {
            "rate": round(threshold, 4),
            "min_attempts_30m": rule.min_attempts_30m,
            "min_attempts_5m": rule.min_attempts_5m,
        },
    }
    # The failed payments that illustrate it, over the window that breached (30 or 5 minutes).
    since = w.start - timedelta(minutes=25) if long else w.start
    return [
        Finding.of_account(
            name, w.start, severity, title, evidence=evidence, sample_types=FAILURE_TYPES,
            sample_since=since,
        )
    ]  # fmt: skip


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
                    f"A payment of {format_amount(a.amount_max, a.currency)} is {multiple:.1f}x"
                    f" the 30-day average of {format_amount(average, a.currency)}"
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
