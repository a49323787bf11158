"""What each rule read in a window, drawn as a chart of an incident: per measure, the observed
value, the value expected, and the bound the decision compared it with.

Pure, as the rules are: each reading calls the very functions its rule decides with, so the
bound drawn is the one compared. A bound means: this measure alone fires (at `low` or above)
iff observed >= bound (`above`), or observed <= bound (`below`: silence). None when no value
would fire. Severities are `strength(p, alpha) >= low`, i.e. `p <= alpha ** low`; the shipped
rules have low = 1, where that is `alpha` itself. A count rule's evidence `bound` is the
significance bound alone; the reading's also holds `min_count` (and the first-in-30-days case),
since those gate the decision too.

Per kind, and what a bound does not carry:
* failure_rate: failed_{5,30,120}m and processing_{5,30,120}m (failures with processing
  errors, judged on their own). A 30-minute or 2-hour window breaches only while the next
  shorter window ending with it still fails (`still_failing_p`), so a long window at or past
  its bound may not fire once failures stopped. With `low` above 1 the decision compares the
  strength rounded to 2 decimals: at the very edge a count one under the bound may fire.
* count_spike: count_{m}m. Where the 30 days hold none of the metrics and the rule notes the
  first in a quiet account, any count fires: the bound is 1.
* amount_spike: max_amount per currency paid in the window (scope: the currency), in Stripe's
  minor units as the evidence. A currency without enough history is not judged (expected and
  bound None); the bound moves with the window's payments and the currencies judged.
* webhook_integrity: invalid_5m against `min_invalid`; no expected value.
* webhook_silence: events_{m}m; the bound is 0 (below) when a window without events would
  fire, None when too few are expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sentinelops.money import is_zero_decimal
from sentinelops_pipelines.rules import amounts, counts, payments, webhook
from sentinelops_pipelines.rules.definitions import (
    AmountRule,
    CountRule,
    FailureRateRule,
    IntegrityRule,
    RuleDefinition,
    SilenceRule,
    Strengths,
)
from sentinelops_pipelines.rules.metrics import LABELS
from sentinelops_pipelines.rules.model import Window
from sentinelops_pipelines.rules.significance import per_test

BoundKind = Literal["above", "below"]


@dataclass(frozen=True)
class Reading:
    """One measure of one rule in one window, keyed by (rule, scope, measure, window_start)."""

    rule: str
    scope: str
    measure: str  # short id: failed_30m, count_30m, max_amount, invalid_5m, events_30m
    label: str  # what a person reads: "failed payments in 30 min"
    window_start: datetime
    observed: float
    expected: float | None  # None: the rule has no baseline here
    bound: float | None  # None: no value of this window would fire
    bound_kind: BoundKind = "above"


def _at_low(alpha: float, severity_at: Strengths) -> float:
    """The tail bound at which a decision reaches its lowest severity."""
    return alpha**severity_at.low


FAILURE_LABELS = {
    "failed": "failed payments",
    "processing": "payments failing with processing errors",
}


def failure_rate(name: str, rule: FailureRateRule, w: Window) -> list[Reading]:
    u = payments.usual(rule, w)
    alpha = _at_low(u.alpha, rule.severity_at)
    out = []
    for measure, metric in payments.MEASURES.items():
        base, effect = u.rates[measure]
        for minutes in sorted(rule.window_minutes):
            attempts = w.value("payment_attempts", minutes)
            out.append(Reading(
                name, "all", f"{measure}_{minutes}m",
                f"{FAILURE_LABELS[measure]} in {payments.duration(minutes)}", w.start,
                observed=w.value(metric, minutes), expected=attempts * base,
                bound=payments.failed_bound(rule, attempts, base, effect, alpha),
            ))  # fmt: skip
    return out


def count_spike(name: str, rule: CountRule, w: Window) -> list[Reading]:
    minutes = rule.window_minutes
    e = counts.expected_count(rule, w)
    alpha = _at_low(per_test(rule.false_alarms_per_day), rule.severity_at)
    label = " and ".join(LABELS[m] for m in rule.metrics)
    return [
        Reading(
            name, "all", f"count_{minutes}m", f"{label} in {payments.duration(minutes)}", w.start,
            observed=sum(w.value(m, minutes) for m in rule.metrics),
            expected=e.expected if _has_baseline(e) else None,
            bound=counts.count_bound(rule, w, e.judged, alpha),
        )
    ]  # fmt: skip


def _has_baseline(e: counts.Expected) -> bool:
    return e.by_volume is not None or any(b.source != "none" for b in e.baselines.values())


def amount_spike(name: str, rule: AmountRule, w: Window) -> list[Reading]:
    """The largest payment per currency paid in the window, in Stripe's minor units (as the
    evidence's `amount` and `amount_at_bound`): cents for USD, whole yen for JPY."""
    judged, alpha = amounts.judged_currencies(rule, w)
    fits = {a.currency: fit for a, fit in judged}
    alpha = _at_low(alpha, rule.severity_at)
    out = []
    for a in w.amounts:
        unit = "" if is_zero_decimal(a.currency) else ", minor units"
        label = f"largest payment in 5 min ({a.currency.upper()}{unit})"
        fit = fits.get(a.currency)
        expected = bound = None
        if fit is not None:
            mean, sd = fit
            expected = math.exp(mean)  # the geometric mean
            bound = amounts.amount_at_bound(rule, mean, sd, max(a.payments, 1), alpha)
        out.append(Reading(name, a.currency, "max_amount", label, w.start,
                           observed=a.amount_max, expected=expected, bound=bound))  # fmt: skip
    return out


def integrity(name: str, rule: IntegrityRule, w: Window) -> list[Reading]:
    return [
        Reading(
            name, "all", "invalid_5m", "webhook attempts failing verification in 5 min", w.start,
            observed=w.value("invalid_attempts"), expected=None, bound=rule.min_invalid,
        )
    ]  # fmt: skip


def silence(name: str, rule: SilenceRule, w: Window) -> list[Reading]:
    minutes = rule.window_minutes
    expected, baseline = webhook.expected_events(rule, w)
    fires = webhook.silent_severity(rule, expected) is not None
    return [
        Reading(
            name, "all", f"events_{minutes}m", f"Stripe events in {payments.duration(minutes)}",
            w.start,
            observed=w.value("events", minutes),
            expected=None if baseline.source == "none" else expected,
            bound=0 if fires else None, bound_kind="below",
        )
    ]  # fmt: skip


KINDS: dict[str, Callable[[str, Any, Window], list[Reading]]] = {
    "failure_rate": failure_rate,
    "count_spike": count_spike,
    "amount_spike": amount_spike,
    "integrity": integrity,
    "silence": silence,
    "gap": lambda name, rule, w: [],  # webhook_gap: found by reconciliation, not in a window
}


def readings(name: str, rule: RuleDefinition, window: Window) -> list[Reading]:
    """What one rule read in one window, a reading per measure (and currency); none for a
    disabled rule."""
    if not rule.enabled:
        return []
    return KINDS[rule.kind](name, rule, window)
