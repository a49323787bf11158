"""Webhook traffic rules: attempts failing verification, and expected traffic that stopped.
(The third, webhook_gap, is found by reconciliation: rules/gap.py.)"""

from __future__ import annotations

from sentinelops.severity import LOWEST_FIRST
from sentinelops_pipelines.rules.definitions import IntegrityRule, SilenceRule
from sentinelops_pipelines.rules.metrics import percent
from sentinelops_pipelines.rules.model import Finding, Severity, Window


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
    severity = None
    for level in LOWEST_FIRST:
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
