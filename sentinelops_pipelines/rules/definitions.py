"""Rule definitions: thresholds, windows, severities and on/off switches, loaded from TOML.

Changing a threshold or turning a rule off is an edit of `rules.toml` (or of the file
`SENTINELOPS_RULES_FILE` names), validated here at load; no code changes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinelops.severity import HIGHEST_FIRST, LOWEST, LOWEST_FIRST, Severity, rank

COUNTABLE = (
    "refunds",
    "disputes",
    "subscriptions_cancelled",
    "invoice_payments_failed",
    "subscriptions_created",
    "payments_failed",
    "payments_failed_processing",
    "payment_attempts",
    "payments_succeeded",
    "events",
)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    description: str = ""
    # History needed before a baseline counts: same hour of week (12 windows a week) first,
    # then the 30-day average (288 windows a day).
    min_same_hour_windows: int = Field(default=24, ge=0)
    min_history_windows: int = Field(default=288, ge=0)

    @property
    def version(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class Strengths(BaseModel):
    """How far past its bound a finding must be for each severity, in multiples of the bound's
    surprise (log p / log bound): 1 is the bound itself, 2 its square."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float = Field(default=1.0, ge=1)
    medium: float = 2.0
    high: float = 4.0

    @model_validator(mode="after")
    def _ordered(self) -> Strengths:
        levels = [getattr(self, name) for name in LOWEST_FIRST]
        if not all(a <= b for a, b in pairwise(levels)):
            raise ValueError(f"severity_at must rise: {' <= '.join(LOWEST_FIRST)}")
        return self

    def severity(self, strength: float) -> Severity | None:
        for name in HIGHEST_FIRST:
            if strength >= getattr(self, name):
                return name
        return None


class _Judged(_Rule):
    """A rule that decides by how improbable a count is under its baseline."""

    # Expected false alarms per day the rule may raise on ordinary traffic, spread over the
    # 288 windows a day and the window lengths it judges (significance.per_test).
    false_alarms_per_day: float = Field(default=0.02, gt=0, le=1)
    severity_at: Strengths = Strengths()


class FailureDiagnosis(BaseModel):
    """How a failure spike's raw events are classified (rules/diagnosis.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_failed: int = Field(default=10, ge=1)  # fewer failed attempts are described, not named
    # Card testing: the median failed attempt is small (units of the currency, or a rough
    # equivalent where a unit is worth little) on cards that are nearly all different.
    small_amount: float = Field(default=2.0, gt=0)
    small_amount_by_currency: dict[str, float] = Field(
        default_factory=lambda: {"jpy": 300.0, "krw": 3000.0}
    )
    distinct_card_share: float = Field(default=0.8, gt=0, le=1)
    min_card_coverage: float = Field(default=0.5, ge=0, le=1)  # failed attempts with a known card
    # One code this dominant among failures is one cause (a processor), not many cards' reasons.
    dominant_code_share: float = Field(default=0.6, gt=0, le=1)

    def small(self, currency: str) -> float:
        """The largest amount, in units of the currency, that card testing is taken to use."""
        return self.small_amount_by_currency.get(currency.lower(), self.small_amount)


class FailureRateRule(_Judged):
    kind: Literal["failure_rate"]
    # Each window length is judged on its own: 5 minutes for a sudden break, 30 minutes and
    # 2 hours for volumes too small to show it in 5.
    window_minutes: list[Literal[5, 30, 120]] = Field(default=[5, 30, 120], min_length=1)
    min_failed: int = Field(default=3, ge=1)  # never fewer failed payments than this
    rate_factor: float = Field(gt=1)  # the rate must also reach baseline x this ...
    min_rate_increase: float = Field(ge=0)  # ... and baseline + this
    min_baseline_attempts: int = Field(ge=1)
    default_baseline_rate: float = Field(gt=0, lt=1)
    # Failures with processing errors are judged on their own, against their usual rate but
    # never one under this (history rolled up before migration 0009 has none counted).
    min_processing_rate: float = Field(default=0.002, gt=0, lt=1)
    # When the 5-minute window and a longer one both breach, the severity rises one level.
    raise_on_agreement: bool = True
    # A window breaches only while the next shorter one ending with it still fails (2 hours:
    # the last 30 minutes; 30 minutes: the last 5): at least the rate above, with a
    # probability under the usual rate of at most this.
    still_failing_p: float = Field(default=0.01, gt=0, le=1)
    diagnosis: FailureDiagnosis = FailureDiagnosis()
    # Judge the window still open once a minute (sentinelops_pipelines/looks.py): the looks
    # share `early_share` of the false-alarm budget, the closed window keeps the rest.
    early_looks: bool = False
    early_share: float = Field(default=0.5, gt=0, lt=1)


class CountRule(_Judged):
    kind: Literal["count_spike"]
    metrics: list[Literal[COUNTABLE]] = Field(min_length=1)  # type: ignore[valid-type]
    window_minutes: Literal[5, 30] = 30
    min_count: int = Field(ge=1)
    # Floor for the expected count, so a count against a near-empty history is not a surprise.
    min_expected: float = Field(gt=0)
    # Judge against current volume too: expected is at least the history's count per unit of
    # this metric times its value over the last 2 hours (refunds grow with orders).
    per: Literal[COUNTABLE] | None = None  # type: ignore[valid-type]
    first_in_quiet_account: Severity | None = None  # first one ever in 30 days
    # A refund or dispute reason this common among them names the spike in its title.
    main_reason_share: float = Field(default=0.5, gt=0, le=1)


class AmountRule(_Judged):
    """The largest payment of a window against its currency's log-normal fit of 30 days;
    `false_alarms_per_day` is the rule's, shared by the currencies judged in each window."""

    kind: Literal["amount_spike"]
    min_history_payments: int = Field(ge=1)  # history payments with a spread, per currency
    # Never below this multiple of the geometric mean, so a tight currency (fixed prices)
    # does not fire on a small excursion however improbable.
    min_multiple: float = Field(default=3.0, ge=1)


class IntegrityRule(_Rule):
    kind: Literal["integrity"]
    min_invalid: int = Field(ge=1)
    share_medium: float = Field(gt=0, le=1)  # invalid share of all attempts for medium
    severity_all_invalid: Severity = "high"
    # Judge the window still open once a minute. The invalid count only grows, so an early
    # breach still breaches once the window closes; its severity may fall as verified events
    # arrive (the share drops), which the closed window then says in the incident's thread.
    early_looks: bool = False


class SilenceRule(_Judged):
    kind: Literal["silence"]
    window_minutes: Literal[5, 30] = 30
    min_expected: float = Field(gt=0)  # no finding where fewer events than this are expected


class GapRule(_Rule):
    """Events the webhook never received, found by reconciliation (not window-based)."""

    kind: Literal["gap"]
    min_missing: int = Field(default=1, ge=1)  # fewer missing events raise nothing
    severity_at: dict[Severity, int] = Field(default_factory=dict)  # missing count per level
    # The types the webhook endpoint subscribes to (Stripe filters at most 20); others were
    # never sent, so never missing. Empty: the endpoint receives every type.
    event_types: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _ordered(self) -> GapRule:
        counts = [self.severity_at[s] for s in LOWEST_FIRST if s in self.severity_at]
        if counts != sorted(counts):
            raise ValueError(f"severity_at must rise: {' <= '.join(LOWEST_FIRST)}")
        return self

    def severity(self, missing: int) -> Severity | None:
        """The highest level whose count is reached; low from `min_missing` up."""
        if missing < self.min_missing:
            return None
        reached = [s for s, at in self.severity_at.items() if missing >= at]
        return max(reached, key=rank, default=LOWEST)


RuleDefinition = Annotated[
    FailureRateRule | CountRule | AmountRule | IntegrityRule | SilenceRule | GapRule,
    Field(discriminator="kind"),
]


class RuleBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quiet_gap_minutes: int = Field(default=30, ge=0)  # breaches closer than this are one incident
    # Incidents whose window ended longer ago than this when found are summarised, not posted.
    found_late_after_minutes: int = Field(default=120, ge=0)
    rules: dict[str, RuleDefinition]

    def enabled(self) -> dict[str, RuleDefinition]:
        return {name: rule for name, rule in self.rules.items() if rule.enabled}


def default_rules_text() -> str:
    return resources.files("sentinelops_pipelines.rules").joinpath("rules.toml").read_text()


def load_rules(path: str | Path | None = None) -> RuleBook:
    """The rule book from `path`, else the packaged `rules.toml`; ValueError if invalid."""
    if not path:
        return parse_rules(default_rules_text(), "rules.toml")
    return parse_rules(Path(path).read_text(), str(path))


def parse_rules(text: str, source: str) -> RuleBook:
    """The rule book in TOML `text`; ValueError naming `source` if invalid."""
    try:
        return RuleBook.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"invalid rule definitions in {source}: {exc}") from exc
