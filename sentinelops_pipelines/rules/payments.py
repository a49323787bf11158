"""Payment rules: the failure rate against its usual level, judged by how improbable the failed
count is among the window's attempts (binomial tail), over 5 minutes, 30 minutes and 2 hours."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from sentinelops.severity import LOWEST_FIRST
from sentinelops_pipelines.rules.definitions import FailureRateRule
from sentinelops_pipelines.rules.metrics import FAILURE_TYPES, percent
from sentinelops_pipelines.rules.model import Finding, Severity, Window
from sentinelops_pipelines.rules.significance import (
    binomial_bound,
    binomial_sf,
    per_test,
    strength,
)


def _rate(failed: int, attempts: int) -> float:
    return failed / attempts if attempts else 0.0


def baseline_rate(rule: FailureRateRule, w: Window) -> tuple[float, str, int]:
    """The usual failure rate, where it comes from and how many attempts it rests on."""
    # A rate rests on attempts: the same hour of week, else any 30 days, holding at least
    # min_baseline_attempts of them; else the rule's default for a new account.
    history = w.history(
        rule.min_same_hour_windows, rule.min_history_windows,
        {"payment_attempts": rule.min_baseline_attempts},
    )  # fmt: skip
    if history is None:
        return rule.default_baseline_rate, "default", 0
    failed, attempts = (history.totals.get(m, 0) for m in ("payments_failed", "payment_attempts"))
    return _rate(failed, attempts), history.source, attempts


def _effect(rule: FailureRateRule, base: float) -> float:
    """The smallest failure rate worth an alarm, however significant a smaller one is."""
    return max(base * rule.rate_factor, base + rule.min_rate_increase)


def judge_window(
    rule: FailureRateRule, base: float, attempts: int, failed: int, alpha: float
) -> dict[str, Any]:
    """One window's verdict: the failed count it would take to breach (`bound`), the count's
    probability under the usual rate, and how far past the bound it is."""
    # A rate of exactly zero or one would make every failure (or none) infinitely surprising.
    p_rate = min(max(base, 0.001), 0.999)
    needed = [rule.min_failed, math.ceil(attempts * _effect(rule, base) - 1e-9)]
    significant = binomial_bound(attempts, p_rate, alpha)
    bound = None if significant is None else max(significant, *needed)
    p_value = binomial_sf(failed, attempts, p_rate)
    return {
        "attempts": attempts,
        "failed": failed,
        "rate": round(_rate(failed, attempts), 4),
        "expected_failed": round(attempts * base, 2),
        "bound": bound,
        "p_value": float(f"{p_value:.3g}"),
        "strength": round(min(strength(p_value, alpha), 999.0), 2),
        "breached": bound is not None and attempts > 0 and failed >= bound,
    }


def _still_failing(rule: FailureRateRule, base: float, w: Window, minutes: int) -> bool:
    attempts, failed = w.value("payment_attempts", minutes), w.value("payments_failed", minutes)
    return (
        _rate(failed, attempts) >= _effect(rule, base)
        and binomial_sf(failed, attempts, base) <= rule.still_failing_p
    )


def failure_rate(name: str, rule: FailureRateRule, w: Window) -> list[Finding]:
    base, source, base_attempts = baseline_rate(rule, w)
    alpha = per_test(rule.false_alarms_per_day, len(rule.window_minutes))
    observed = {
        f"{m}m": judge_window(
            rule, base, w.value("payment_attempts", m), w.value("payments_failed", m), alpha
        )
        for m in sorted(rule.window_minutes)
    }
    # A long window remembers failures for its whole length: it breaches only while the shorter
    # window ending with it still fails beyond chance, so an incident ends when failures do.
    lengths = sorted(rule.window_minutes)
    recent = {f"{long}m": _still_failing(rule, base, w, short)
              for short, long in zip(lengths, lengths[1:], strict=False)}  # fmt: skip
    breached = [k for k, v in observed.items() if v["breached"] and recent.get(k, True)]
    if not breached:
        return []
    strongest = max(breached, key=lambda key: observed[key]["strength"])
    severity = rule.severity_at.severity(observed[strongest]["strength"])
    if severity is None:
        return []
    agree = "5m" in breached and len(breached) > 1
    if agree and rule.raise_on_agreement:
        severity = _one_up(severity)
    shown = observed[strongest]
    minutes = int(strongest.removesuffix("m"))
    title = (
        f"Payment failure rate {percent(shown['rate'])} over {_span(minutes)}"
        f" ({shown['failed']} of {shown['attempts']} payments; usual {percent(base)})"
    )
    evidence = {
        "windows": observed,
        "breached_windows": breached,
        "recent_window_still_failing": recent,
        "decided_by": strongest,
        "baseline": {"rate": round(base, 4), "source": source, "attempts": base_attempts},
        "thresholds": {
            "false_alarms_per_day": rule.false_alarms_per_day,
            "per_window_bound": float(f"{alpha:.3g}"),
            "rate_factor": rule.rate_factor,
            "min_rate_increase": rule.min_rate_increase,
            "min_failed": rule.min_failed,
            "severity_at": rule.severity_at.model_dump(),
        },
    }
    # The failed payments that illustrate it, over the longest window that breached.
    longest = max(int(key.removesuffix("m")) for key in breached)
    since = w.start - timedelta(minutes=longest - 5)
    return [
        Finding.of_account(
            name, w.start, severity, title, evidence=evidence, sample_types=FAILURE_TYPES,
            sample_since=since,
        )
    ]  # fmt: skip


def _one_up(severity: Severity) -> Severity:
    return LOWEST_FIRST[min(LOWEST_FIRST.index(severity) + 1, len(LOWEST_FIRST) - 1)]


def _span(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes >= 60 else f"{minutes} min"
