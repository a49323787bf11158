"""Count spikes: refunds, disputes, churn, ... improbable under what their baselines expect
(Poisson tail), where the expectation follows current volume when the rule says per what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sentinelops_pipelines.rules.definitions import CountRule
from sentinelops_pipelines.rules.metrics import LABELS, METRIC_TYPES
from sentinelops_pipelines.rules.model import Baseline, Finding, Window
from sentinelops_pipelines.rules.significance import (
    per_test,
    poisson_sf,
    quick_poisson_bound,
    reported,
    strength,
)

VOLUME_MINUTES = 120  # current volume is read over the last 2 hours, steadier than 30 minutes


def expected_by_volume(rule: CountRule, w: Window, minutes: int) -> dict[str, float] | None:
    """What the current volume predicts: the 30 days' count per unit of `rule.per`, times that
    metric's current volume in the rule's window. None without a `per` or its history."""
    if rule.per is None:
        return None
    history_volume = w.history_30d.get(rule.per, 0)
    if history_volume <= 0:
        return None
    # The busier of the rule's own window and the last 2 hours: a sale ramping up shows in the
    # former first, the latter is steadier.
    volume = max(w.value(rule.per, minutes),
                 w.value(rule.per, VOLUME_MINUTES) * minutes / VOLUME_MINUTES)  # fmt: skip
    return {
        "per": rule.per,
        "volume": round(volume, 1),
        "volume_last_2h": w.value(rule.per, VOLUME_MINUTES),
        "expected": sum(w.history_30d.get(m, 0) for m in rule.metrics) / history_volume * volume,
    }


@dataclass(frozen=True)
class Expected:
    """What a count rule expects over its window, by the clock (the metrics' baselines) and by
    current volume; it judges against the larger, never under `min_expected`."""

    baselines: dict[str, Baseline]
    by_clock: float
    by_volume: dict[str, float] | None
    expected: float
    judged: float


def expected_count(rule: CountRule, w: Window) -> Expected:
    minutes = rule.window_minutes
    baselines = {
        m: w.baseline(m, rule.min_same_hour_windows, rule.min_history_windows) for m in rule.metrics
    }
    by_clock = sum(b.expected(minutes) for b in baselines.values())
    by_volume = expected_by_volume(rule, w, minutes)
    expected = max(by_clock, by_volume["expected"] if by_volume else 0.0)
    return Expected(baselines, by_clock, by_volume, expected, max(expected, rule.min_expected))


def first_in_30_days(rule: CountRule, w: Window) -> bool:
    """None of the rule's metrics in the 30 days before: any count is the first."""
    return sum(w.history_30d.get(m, 0) for m in rule.metrics) == 0


def count_bound(rule: CountRule, w: Window, judged: float, alpha: float) -> int:
    """The smallest count over the rule's window that fires where `judged` is expected and
    `alpha` is the tail bound: improbable and at least `min_count`; 1 when any count would be
    noted as the first in a quiet account."""
    if rule.first_in_quiet_account is not None and first_in_30_days(rule, w):
        return 1
    return max(quick_poisson_bound(judged, alpha), rule.min_count)


def count_spike(name: str, rule: CountRule, w: Window) -> list[Finding]:
    minutes = rule.window_minutes
    count = sum(w.value(m, minutes) for m in rule.metrics)
    first_ever = count > 0 and first_in_30_days(rule, w)
    noted = first_ever and rule.first_in_quiet_account is not None
    if count < rule.min_count and not noted:
        return []
    e = expected_count(rule, w)
    expected, judged, by_volume = e.expected, e.judged, e.by_volume
    # Which history a baseline comes from depends on the window's history, not the metric.
    kind = next(iter(e.baselines.values()))
    alpha = per_test(rule.false_alarms_per_day)
    p_value = poisson_sf(count, judged)
    how_far = strength(p_value, alpha)
    severity = rule.severity_at.severity(how_far) if count >= rule.min_count else None
    if severity is None and noted:
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
        "p_value": reported(p_value),
        "strength": round(how_far, 2),
        "bound": quick_poisson_bound(judged, alpha),
        "baseline": {
            "expected": round(expected, 3),
            "by_clock": round(e.by_clock, 3),
            "by_volume": (
                {**by_volume, "expected": round(by_volume["expected"], 3)} if by_volume else None
            ),
            "source": kind.source,
            "history_windows": kind.windows,
            "by_metric": {m: round(b.expected(minutes), 3) for m, b in e.baselines.items()},
            "first_in_30_days": first_ever,
        },
        "thresholds": {
            "min_count": rule.min_count,
            "min_expected": rule.min_expected,
            "false_alarms_per_day": rule.false_alarms_per_day,
            "per_window_bound": reported(alpha),
            "severity_at": rule.severity_at.model_dump(),
        },
        # The series a chart of it draws (rule_readings).
        "chart": {"measure": f"count_{minutes}m", "scope": "all"},
    }
    # The events that illustrate it: the metrics' types, over the rule's window.
    types = tuple(t for m in rule.metrics for t in METRIC_TYPES.get(m, ()))
    since = w.start - timedelta(minutes=minutes - 5)
    return [
        Finding.of_account(
            name, w.start, severity, title, evidence=evidence, sample_types=types,
            sample_since=since,
        )
    ]  # fmt: skip
