"""Webhook traffic rules: attempts failing verification, and expected traffic that stopped.
(The third, webhook_gap, is found by reconciliation: rules/gap.py.)"""

from __future__ import annotations

import math

from sentinelops_pipelines.rules.definitions import IntegrityRule, SilenceRule
from sentinelops_pipelines.rules.metrics import percent
from sentinelops_pipelines.rules.model import Baseline, Finding, Severity, Window
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
    title = f"{invalid} webhook attempts failed verification in {w.look_minutes or 5} min" + (
        " and none verified" if verified == 0 else f" ({percent(share)} of attempts)"
    )
    evidence = {
        "invalid_attempts": invalid,
        "verified_received": verified,
        "invalid_share": round(share, 4),
        "time_basis": "received_at",
        "thresholds": {"min_invalid": rule.min_invalid, "share_medium": rule.share_medium},
        # The series a chart of it draws (rule_readings).
        "chart": {"measure": "invalid_5m", "scope": "all"},
    }
    return [Finding.of_account(name, w.start, severity, title, evidence=evidence)]


def expected_events(rule: SilenceRule, w: Window) -> tuple[float, Baseline]:
    """The events expected over the rule's window, and the baseline it rests on."""
    minutes = rule.window_minutes
    baseline = w.baseline("events", rule.min_same_hour_windows, rule.min_history_windows)
    expected = baseline.expected(minutes)
    if baseline.source == "same_hour_of_week" and "events" in w.same_hour_typical:
        # One busy week (a card-testing night, a sale) must not make its hour look silent for
        # the next four weeks: expect no more than the median week did.
        typical = w.same_hour_typical["events"] / w.windows_same_hour * minutes / 5
        expected = min(expected, typical)
    return expected, baseline


def silent_severity(rule: SilenceRule, expected: float) -> Severity | None:
    """The severity of a window without events where `expected` arrive at random: no event at
    all has probability exp(-expected). None below `min_expected` or within chance."""
    if expected < rule.min_expected:
        return None
    alpha = per_test(rule.false_alarms_per_day)
    return rule.severity_at.severity(strength(math.exp(-expected), alpha))


def silence(name: str, rule: SilenceRule, w: Window) -> list[Finding]:
    minutes = rule.window_minutes
    if w.value("events", minutes) > 0:
        return []
    expected, baseline = expected_events(rule, w)
    severity = silent_severity(rule, expected)
    if severity is None:
        return []
    alpha = per_test(rule.false_alarms_per_day)
    p_none = math.exp(-expected)
    how_far = strength(p_none, alpha)
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
                # The series a chart of it draws (rule_readings).
                "chart": {"measure": f"events_{minutes}m", "scope": "all"},
            },
        )
    ]  # fmt: skip
