"""Diagnosis: what kind of spike a finding is, told from the raw events of its breaching span.

A failure spike is card testing, a processor or integration outage, issuer declines, or left
unclassified with the reason; a refund or dispute spike names its main reason where one
dominates. Pure: storage/diagnosis.py counts the events, this module judges and words them.

Evidence holds codes, amounts, counts and shares only: never a card fingerprint, a card
number's part, an email or a name (the counts arrive already aggregated).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from sentinelops.money import format_amount, format_major, major_units
from sentinelops_pipelines.rules.definitions import FailureDiagnosis
from sentinelops_pipelines.rules.metrics import PROCESSING_CODES, percent
from sentinelops_pipelines.rules.model import Finding

TOP = 5  # codes and reasons listed by name; the rest are summed as "other"
NO_CODE = "unknown"  # how an attempt whose events carry no code is listed
# What an issuer answers about a card (Stripe's decline codes, and the charge's failure codes).
ISSUER_DECLINE_CODES = frozenset(
    """approve_with_id call_issuer card_declined card_not_supported card_velocity_exceeded
    currency_not_supported do_not_honor do_not_try_again duplicate_transaction expired_card
    fraudulent generic_decline incorrect_cvc incorrect_number incorrect_pin incorrect_zip
    insufficient_funds invalid_account invalid_amount invalid_cvc invalid_expiry_month
    invalid_expiry_year invalid_number invalid_pin lost_card merchant_blacklist
    new_account_information_available no_action_taken not_permitted offline_pin_required
    online_or_offline_pin_required pickup_card pin_try_exceeded restricted_card
    revocation_of_all_authorizations revocation_of_authorization security_violation
    service_not_allowed stolen_card stop_payment_order testmode_decline transaction_not_allowed
    withdrawal_count_limit_exceeded""".split()
)

DEFAULTS = FailureDiagnosis()

Classification = Literal["card_testing", "processor_outage", "issuer_declines", "unclassified"]


@dataclass(frozen=True)
class TopCounts:
    """How often each code (or reason) occurs, most frequent first; None is no code."""

    counts: list[tuple[str | None, int]]

    @property
    def top(self) -> list[tuple[str, int]]:
        return [(code or NO_CODE, n) for code, n in self.counts[:TOP]]

    @property
    def leading(self) -> tuple[str | None, int]:
        """The most common known code and its count, (None, 0) if no attempt has one."""
        return next(((c, n) for c, n in self.counts if c is not None), (None, 0))

    @property
    def known(self) -> int:
        return sum(n for code, n in self.counts if code is not None)

    def evidence(self) -> dict[str, Any]:
        other = sum(n for _, n in self.counts[TOP:])
        return {"top": [{"code": c, "count": n} for c, n in self.top], "other": other}


@dataclass(frozen=True)
class Amounts:
    """Amounts (minor units) of one currency, the most common one among the items."""

    currency: str | None
    count: int  # items in that currency
    other_currencies: int  # items in any other
    min: int | None = None
    median: int | None = None
    p90: int | None = None
    max: int | None = None
    most_common: int | None = None
    most_common_count: int = 0

    @property
    def most_common_share(self) -> float:
        return self.most_common_count / self.count if self.count else 0.0

    def formatted(self, amount: int) -> str:
        return format_amount(amount, self.currency or "")

    def evidence(self) -> dict[str, Any]:
        return {
            "currency": self.currency, "count": self.count,
            "other_currencies": self.other_currencies, "min": self.min, "median": self.median,
            "p90": self.p90, "max": self.max, "most_common": self.most_common,
            "most_common_share": round(self.most_common_share, 4),
        }  # fmt: skip


@dataclass(frozen=True)
class FailureStats:
    """The payment attempts of a span and what their failed ones have in common."""

    attempts: int
    failed: int
    failure_codes: TopCounts
    decline_codes: TopCounts
    amounts: Amounts
    with_card: int  # failed attempts whose card is known
    distinct_cards: int
    with_customer: int
    distinct_customers: int

    @property
    def distinct_card_share(self) -> float | None:
        return self.distinct_cards / self.with_card if self.with_card else None

    @property
    def distinct_customer_share(self) -> float | None:
        return self.distinct_customers / self.with_customer if self.with_customer else None


@dataclass(frozen=True)
class ReasonStats:
    """Refunds or disputes of a span: their reasons and amounts."""

    count: int
    reasons: TopCounts
    amounts: Amounts


@dataclass(frozen=True)
class Verdict:
    classification: Classification
    reason: str
    title: str | None  # None keeps the rule's own title


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def _in_ten(share: float) -> str:
    return "all" if share >= 1 else f"{min(9, max(1, round(share * 10)))} in 10"


def _card_testing(s: FailureStats, p: FailureDiagnosis) -> Verdict | None:
    a, cards = s.amounts, s.distinct_card_share
    if a.currency is None or a.median is None or a.most_common is None or cards is None:
        return None
    if major_units(a.median, a.currency) > p.small(a.currency):
        return None
    if _share(s.with_card, s.failed) < p.min_card_coverage or cards < p.distinct_card_share:
        return None
    common = a.most_common_share
    where = (f"{_in_ten(common)} at {a.formatted(a.most_common)}" if common >= 0.5
             else f"median {a.formatted(a.median)}")  # fmt: skip
    reason = (
        f"{s.failed} failed attempts at a median of {a.formatted(a.median)}, small (at most"
        f" {format_major(p.small(a.currency), a.currency)}), {percent(common)} of them at"
        f" {a.formatted(a.most_common)}; {percent(cards)} of the {s.with_card} with a known card"
        f" on distinct cards (card testing from {percent(p.distinct_card_share)})"
    )
    title = f"Card testing suspected: {s.failed} of {s.attempts} attempts declined, {where}"
    return Verdict("card_testing", reason, title)


def _outage(s: FailureStats, p: FailureDiagnosis) -> Verdict | None:
    for codes in (s.failure_codes, s.decline_codes):
        code, n = codes.leading
        if code in PROCESSING_CODES and _share(n, s.failed) >= p.dominant_code_share:
            median = s.amounts.median
            amounts = (f"; median failed amount {s.amounts.formatted(median)}"
                       if median is not None else "")  # fmt: skip
            reason = (
                f"{code} took {n} of {s.failed} failed attempts ({percent(_share(n, s.failed))};"
                f" one processing code at {percent(p.dominant_code_share)} or more points to the"
                f" processor or the integration, not the cards){amounts}"
            )
            title = (f"Processor outage suspected: {n} of {s.attempts} attempts failed"
                     f" with {code}")  # fmt: skip
            return Verdict("processor_outage", reason, title)
    return None


def _issuer(s: FailureStats, p: FailureDiagnosis) -> Verdict:
    # Decline codes say the issuer's reason; the charge's failure code stands in without them.
    codes = s.decline_codes
    if codes.known < s.failed / 2:
        codes = s.failure_codes
    if codes.known < s.failed / 2:
        return Verdict(
            "unclassified",
            f"only {codes.known} of {s.failed} failed attempts carry a failure or decline code",
            None,
        )
    code, n = codes.leading
    known = [(c, k) for c, k in codes.counts if c is not None]
    listed = ", ".join(f"{c} {k}" for c, k in known[:3]) + (", …" if len(known) > 3 else "")
    title = f"Issuer declines: {s.failed} of {s.attempts} attempts declined ({listed})"
    share = _share(n, s.failed)
    if share < p.dominant_code_share:
        reason = (
            f"no code took {percent(p.dominant_code_share)} of the {s.failed} failed attempts"
            f" (the most"
            f" common, {code}, took {n}): declines spread over the issuers' own reasons"
        )
        return Verdict("issuer_declines", reason, title)
    if code in ISSUER_DECLINE_CODES:
        reason = (f"{code}, an issuer's decline code, took {n} of {s.failed} failed attempts"
                  f" ({percent(share)})")  # fmt: skip
        return Verdict("issuer_declines", reason, title)
    reason = (f"{code} took {n} of {s.failed} failed attempts ({percent(share)}): neither an"
              " issuer's decline nor a processing error")  # fmt: skip
    return Verdict("unclassified", reason, None)


def classify_failures(s: FailureStats, p: FailureDiagnosis = DEFAULTS) -> Verdict:
    """Card testing, then a processor outage, then issuer declines; else unclassified."""
    if s.failed < p.min_failed:
        return Verdict(
            "unclassified",
            f"{s.failed} failed attempts are too few to classify (at least {p.min_failed})",
            None,
        )
    return _card_testing(s, p) or _outage(s, p) or _issuer(s, p)


def _span_evidence(finding: Finding) -> dict[str, str]:
    since, end = finding.span
    return {"since": since.isoformat(), "until": end.isoformat()}


def with_failure_diagnosis(
    finding: Finding, s: FailureStats, p: FailureDiagnosis = DEFAULTS
) -> Finding:
    """The finding with its failures diagnosed: evidence["diagnosis"], and a title that names
    the kind of failure where it is classified."""
    verdict = classify_failures(s, p)
    diagnosis = {
        "of": "payment_failures",
        **_span_evidence(finding),
        "classification": verdict.classification,
        "reason": verdict.reason,
        "attempts": s.attempts,
        "failed": s.failed,
        "failure_codes": s.failure_codes.evidence(),
        "decline_codes": s.decline_codes.evidence(),
        "failed_amounts": s.amounts.evidence(),
        "cards": {"known": s.with_card, "distinct_share": _rounded(s.distinct_card_share)},
        "customers": {
            "known": s.with_customer,
            "distinct_share": _rounded(s.distinct_customer_share),
        },
        "thresholds": {
            "min_failed": p.min_failed,
            "small_amount": p.small(s.amounts.currency or ""),
            "distinct_card_share": p.distinct_card_share,
            "dominant_code_share": p.dominant_code_share,
        },
    }
    return replace(finding, title=verdict.title or finding.title,
                   evidence={**finding.evidence, "diagnosis": diagnosis})  # fmt: skip


def with_reason_diagnosis(
    finding: Finding, s: ReasonStats, of: str, main_share: float = 0.5
) -> Finding:
    """A refund or dispute finding with its reasons and amounts; the title gains the main
    reason where one covers at least `main_share` of them."""
    reason, n = s.reasons.leading
    main = reason if reason is not None and _share(n, s.count) >= main_share else None
    diagnosis = {
        "of": of,
        **_span_evidence(finding),
        "count": s.count,
        "main_reason": main,
        "reasons": s.reasons.evidence(),
        "amounts": s.amounts.evidence(),
        "thresholds": {"main_reason_share": main_share},
    }
    title = finding.title
    if main is not None:
        title = f"{title}, {n} of them {main.replace('_', ' ')}"
    return replace(finding, title=title, evidence={**finding.evidence, "diagnosis": diagnosis})


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)
