"""Webhook traffic rules: attempts failing verification, and expected traffic that stopped.
(The third, webhook_gap, is found by reconciliation: rules/gap.py.)"""

from __future__ import annotations

import math

from sentinelops_pipelines.rules.definitions import IntegrityRule, SilenceRule
from sentinelops_pipelines.rules.metrics import percent
from sentinelops_pipelines.rules.model import Finding, Severity, Window
from sentinelops_pipelines.rules.significance import per_test, reported, strength


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
        " and none verified" if verified == 0 else f" ({percent(share)} of attempts)"
    )
    evidence = {
        "invalid_attempts": invalid,
        "verified_received": verified,
        "invalid_share": round(share, 4),
        "time_basis": "received_at",
        "thresholds": {"min_invalid": rule.min_invalid, "share_medium": rule.share_medium},
    }
    return [Finding.of_account(name, w.start, severity, title, evidence=evidence)]


def silence(name: str, rule: SilenceRule, w: Window) -> list[Finding]:
    minutes = rule.window_minutes
    if w.value("events", minutes) > 0:
        return []
    baseline = w.baseline("events", rule.min_same_hour_windows, rule.min_history_windows)
    expected = baseline.expected(minutes)
    if baseline.source == "same_hour_of_week" and "events" in w.same_hour_typical:
        # One busy week (a card-testing night, a sale) must not make its hour look silent for
        # the next four weeks: expect no more than the median week did.
        typical = w.same_hour_typical["events"] / w.windows_same_hour * minutes / 5
        expected = min(expected, typical)
    if expected < rule.min_expected:
        return []
    # No event at all where `expected` arrive at random: probability exp(-expected).
    alpha = per_test(rule.false_alarms_per_day)
    p_none = math.exp(-expected)
    how_far = strength(p_none, alpha)
    severity = rule.severity_at.severity(how_far)
    if severity is None:
        return []
    return [
        Finding.of_account(
            name, w.start, severity,
            f"No Stripe events for {minutes} min where about {expected:.0f} are expected",
            evidence={
                "events": 0,
                "window_minutes": minutes,
                "p_value": reported(p_none),
                "strength": round(how_far, 2),
                "baseline": {
                    "expected": round(expected, 2),
                    "source": baseline.source,
                    "history_windows": baseline.windows,
                },
                "thresholds": {
                    "min_expected": rule.min_expected,
                    "false_alarms_per_day": rule.false_alarms_per_day,
                    "per_window_bound": reported(alpha),
                    "severity_at": rule.severity_at.model_dump(),
                },
            },
        )
    ]  # fmt: skip
