"""Count spikes: refunds, disputes, churn, ... far above what their baselines expect."""

from __future__ import annotations

from datetime import timedelta

from sentinelops_pipelines.rules.definitions import CountRule
from sentinelops_pipelines.rules.metrics import LABELS, METRIC_TYPES
from sentinelops_pipelines.rules.model import Finding, Window


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
    evidence = {
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
    }
    # The events that illustrate it: the metrics' types, over the rule's window.
    types = tuple(t for m in rule.metrics for t in METRIC_TYPES.get(m, ()))
    since = w.start - timedelta(minutes=minutes - 5)
    return [
        Finding.of_account(
            name,
            w.start,
            severity,
            title,
            evidence=evidence,
            sample_types=types,
            sample_since=since,
        )
    ]
