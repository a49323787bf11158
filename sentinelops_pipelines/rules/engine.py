"""One evaluation path for every rule: window -> decision -> finding.

Each rule kind is a pure function of (name, definition, window), kept with its family:
payments.py, amounts.py, counts.py, webhook.py. Windowing, baselines (model.py), evidence
bookkeeping and idempotency live outside the kinds, so no rule re-implements them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sentinelops_pipelines.rules.amounts import amount_spike
from sentinelops_pipelines.rules.counts import count_spike
from sentinelops_pipelines.rules.definitions import RuleDefinition
from sentinelops_pipelines.rules.model import Finding, Window
from sentinelops_pipelines.rules.payments import failure_rate
from sentinelops_pipelines.rules.webhook import integrity, silence


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
    if findings:  # the stamp costs a JSON dump: only for what is recorded
        stamp = {"rule_definition": rule.model_dump(mode="json"), "rule_version": rule.version}
        for finding in findings:
            finding.evidence.update(stamp)
    return findings
