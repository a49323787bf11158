"""Payment rules: the failure rate against its usual level, judged by how improbable the failed
count is among the window's attempts (binomial tail), over 5 minutes, 30 minutes and 2 hours;
and the same for failures with processing errors, which ordinary traffic rarely has."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sentinelops.severity import one_up
from sentinelops_pipelines.rules.definitions import FailureRateRule
from sentinelops_pipelines.rules.metrics import FAILURE_TYPES, percent
from sentinelops_pipelines.rules.model import Finding, Window
from sentinelops_pipelines.rules.significance import (
    LOOKS_PER_WINDOW,
    binomial_sf,
    look_share,
    per_test,
    quick_binomial_bound,
    reported,
    strength,
)


def _rate(failed: int, attempts: int) -> float:
    return failed / attempts if attempts else 0.0


def baseline_rate(
    rule: FailureRateRule, w: Window, metric: str = "payments_failed"
) -> tuple[float, str, int]:
    """The usual rate of `metric` among attempts, where it comes from and how many attempts it
    rests on."""
    # A rate rests on attempts: the same hour of week, else any 30 days, holding at least
    # min_baseline_attempts of them; else the rule's default for a new account.
    history = w.history(
        rule.min_same_hour_windows, rule.min_history_windows,
        {"payment_attempts": rule.min_baseline_attempts},
    )  # fmt: skip
    if history is None:
        default = rule.default_baseline_rate if metric == "payments_failed" else 0.0
        return default, "default", 0
    failed, attempts = (history.totals.get(m, 0) for m in (metric, "payment_attempts"))
    return _rate(failed, attempts), history.source, attempts


def _effect(rule: FailureRateRule, base: float) -> float:
    """The smallest failure rate worth an alarm, however significant a smaller one is."""
    return max(base * rule.rate_factor, base + rule.min_rate_increase)


def judge_window(
    rule: FailureRateRule, base: float, effect: float, attempts: int, failed: int, alpha: float
) -> dict[str, Any]:
    """One window's verdict: the count's probability under the usual rate, how far past the
    per-window bound that is, and whether it breaches (past chance, at least `min_failed` and
    the `effect` rate). The bound itself is added for findings only (`with_bound`)."""
    p_value = binomial_sf(failed, attempts, _clamped(base))
    needed = _needed(rule, attempts, effect)
    return {
        "attempts": attempts,
        "failed": failed,
        "rate": round(_rate(failed, attempts), 4),
        "expected_failed": round(attempts * base, 2),
        "p_value": reported(p_value),
        "strength": round(strength(p_value, alpha), 2),
        "breached": attempts > 0 and failed >= needed and p_value <= alpha,
    }


def with_bound(rule: FailureRateRule, verdict: dict[str, Any], base: float, effect: float,
               alpha: float) -> dict[str, Any]:  # fmt: skip
    """The verdict with the failed count its window needed to breach (`failed_bound`)."""
    return {**verdict, "bound": failed_bound(rule, verdict["attempts"], base, effect, alpha)}


def failed_bound(
    rule: FailureRateRule, attempts: int, base: float, effect: float, alpha: float
) -> int | None:
    """The fewest failed payments among `attempts` that breach at `alpha`: past chance and
    `_needed` (None: not even every attempt failing would). What a chart draws as the bound."""
    needed = _needed(rule, attempts, effect)
    if needed > attempts:
        return None
    significant = quick_binomial_bound(attempts, _clamped(base), alpha)
    return None if significant is None else max(significant, needed)


def _needed(rule: FailureRateRule, attempts: int, effect: float) -> int:
    """The fewest failed payments among `attempts` worth an alarm, however improbable."""
    return max(rule.min_failed, math.ceil(attempts * effect - 1e-9))


def _clamped(rate: float) -> float:
    """A usual rate of exactly 0 or 1 would make any failure (or none) infinitely surprising."""
    return min(max(rate, 1e-4), 0.999)


@dataclass(frozen=True)
class Judged:
    """One measure (all failures, or processing errors) over every window length."""

    base: float
    effect: float
    windows: dict[str, dict[str, Any]]
    still_failing: dict[str, bool]  # longer windows: does the next shorter one still fail?

    @property
    def breached(self) -> list[str]:
        return [
            k for k, v in self.windows.items() if v["breached"] and self.still_failing.get(k, True)
        ]

    def bounded(self, rule: FailureRateRule, alpha: float) -> dict[str, dict[str, Any]]:
        """The windows' verdicts with their bounds (for a finding's evidence)."""
        return {k: with_bound(rule, v, self.base, self.effect, alpha)
                for k, v in self.windows.items()}  # fmt: skip


def judge(rule: FailureRateRule, w: Window, metric: str, base: float, effect: float,
          alpha: float) -> Judged:  # fmt: skip
    lengths = sorted(rule.window_minutes)
    windows = {
        f"{m}m": judge_window(
            rule, base, effect, w.value("payment_attempts", m), w.value(metric, m), alpha
        )
        for m in lengths
    }

    # A long window remembers failures for its whole length: it breaches only while the shorter
    # window ending with it still fails beyond chance, so an incident ends when failures do.
    def still(minutes: int) -> bool:
        attempts, failed = w.value("payment_attempts", minutes), w.value(metric, minutes)
        return (
            _rate(failed, attempts) >= effect
            and binomial_sf(failed, attempts, _clamped(base)) <= rule.still_failing_p
        )

    recent = {f"{long}m": still(short) for short, long in zip(lengths, lengths[1:], strict=False)}
    return Judged(base, effect, windows, recent)


# The two measures judged: all failures, and failures with processing errors.
MEASURES = {"failed": "payments_failed", "processing": "payments_failed_processing"}


@dataclass(frozen=True)
class Usual:
    """What a window's failures are judged against: per measure, the usual rate and the
    smallest rate worth an alarm; where the usual rate of all failures comes from; and the
    per-window bound (each window length and measure is one decision)."""

    rates: dict[str, tuple[float, float]]  # measure -> (usual rate, effect)
    source: str
    attempts: int
    alpha: float


def window_alpha(rule: FailureRateRule, w: Window) -> float:
    """The bound of one decision on this window: the rule's daily budget over the day's
    windows and the lengths and measures judged; with early looks, this look's part of it."""
    alpha = per_test(rule.false_alarms_per_day, 2 * len(rule.window_minutes))
    return alpha * look_share(rule.early_share, w.look_minutes) if rule.early_looks else alpha


def usual(rule: FailureRateRule, w: Window) -> Usual:
    base, source, base_attempts = baseline_rate(rule, w)
    # Failures on the path to the bank (processing_error, ...) are rare on ordinary traffic, so
    # a handful of them among a small shop's attempts already says the processor is down.
    processing = max(
        baseline_rate(rule, w, "payments_failed_processing")[0], rule.min_processing_rate
    )
    return Usual(
        rates={"failed": (base, _effect(rule, base)),
               "processing": (processing, processing * rule.rate_factor)},
        source=source, attempts=base_attempts,
        alpha=window_alpha(rule, w),
    )  # fmt: skip


def failure_rate(name: str, rule: FailureRateRule, w: Window) -> list[Finding]:
    u = usual(rule, w)
    base, processing_base, alpha = u.rates["failed"][0], u.rates["processing"][0], u.alpha
    failed = judge(rule, w, MEASURES["failed"], *u.rates["failed"], alpha)
    processing = judge(rule, w, MEASURES["processing"], *u.rates["processing"], alpha)
    verdicts = [(failed.windows[k], k, "failed") for k in failed.breached] + [
        (processing.windows[k], k, "processing") for k in processing.breached
    ]
    if not verdicts:
        return []
    _, strongest, measure = max(verdicts, key=lambda v: v[0]["strength"])
    failed_windows, processing_windows = (
        failed.bounded(rule, alpha),
        processing.bounded(rule, alpha),
    )
    shown = (processing_windows if measure == "processing" else failed_windows)[strongest]
    severity = rule.severity_at.severity(shown["strength"])
    if severity is None:
        return []
    breached = sorted({k for _, k, _ in verdicts}, key=lambda k: int(k.removesuffix("m")))
    if "5m" in breached and len(breached) > 1 and rule.raise_on_agreement:
        severity = one_up(severity)
    # What the window covered: an early look has seen only the first minutes of its last 5.
    minutes = int(strongest.removesuffix("m")) - 5 + (w.look_minutes or 5)
    if measure == "processing":
        title = (
            f"Payments failing with processing errors: {shown['failed']} of"
            f" {shown['attempts']} over {duration(minutes)} (usual {percent(processing_base, 1)})"
        )
    else:
        title = (
            f"Payment failure rate {percent(shown['rate'])} over {duration(minutes)}"
            f" ({shown['failed']} of {shown['attempts']} payments; usual {percent(base)})"
        )
    evidence = {
        # The window that decided first: what an alert's fields show.
        "observed": {
            "window": duration(minutes),
            "of": "processing errors" if measure == "processing" else "all failures",
            **{k: v for k, v in shown.items() if k != "breached"},
        },
        "windows": failed_windows,
        "processing_errors": {
            "windows": processing_windows,
            "baseline_rate": round(processing_base, 5),
            "recent_window_still_failing": processing.still_failing,
        },
        "breached_windows": breached,
        # The series a chart of it draws (rule_readings): the measure and window that decided.
        "chart": {"measure": f"{measure}_{strongest}", "scope": "all"},
        "recent_window_still_failing": failed.still_failing,
        "baseline": {"rate": round(base, 4), "source": u.source, "attempts": u.attempts},
        "thresholds": {
            "false_alarms_per_day": rule.false_alarms_per_day,
            "per_window_bound": reported(alpha),
            "rate_factor": rule.rate_factor,
            "min_rate_increase": rule.min_rate_increase,
            "min_failed": rule.min_failed,
            "min_processing_rate": rule.min_processing_rate,
            "severity_at": rule.severity_at.model_dump(),
            **(
                {"early_looks": {"share": rule.early_share, "looks_per_window": LOOKS_PER_WINDOW}}
                if rule.early_looks
                else {}
            ),
        },
    }
    # The failed payments that illustrate it, over the longest window that breached.
    since = w.start - timedelta(minutes=int(breached[-1].removesuffix("m")) - 5)
    return [
        Finding.of_account(
            name, w.start, severity, title, evidence=evidence, sample_types=FAILURE_TYPES,
            sample_since=since,
        )
    ]  # fmt: skip


def duration(minutes: int) -> str:
    """A window length as titles and labels say it: 30 min, 2 h, 1 h 57 min (an early look)."""
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {rest} min" if rest else "")
