"""What tests/merchants.py injects into the evaluated month: incidents the rules must find and
benign shapes they must stay quiet on, placed by a seeded plan (one kind per day, so each alarm
can be told apart).

An incident is a span plus how it changes traffic: a `Change` alters the baseline (volume, a
failure rate and its failure codes), a `Burst` adds units on top (card tests, refunds, ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sentinelops_pipelines.rules.significance import binomial_sf

# (failure_code, outcome.type, outcome.reason): what a declined charge says about itself.
Failure = tuple[str, str, str]
ISSUER_DECLINES: list[Failure] = [
    ("card_declined", "issuer_declined", "do_not_honor"),
    ("card_declined", "issuer_declined", "generic_decline"),
    ("card_declined", "issuer_declined", "insufficient_funds"),
]
PROCESSING: list[Failure] = [("processing_error", "issuer_declined", "processing_error")]
# A Radar rule written too broadly blocks every payment of a checkout.
BLOCKED_BY_RULE: list[Failure] = [("card_declined", "blocked", "rule")]
CARD_TESTING: list[Failure] = [
    ("card_declined", "issuer_declined", "generic_decline"),
    ("incorrect_cvc", "issuer_declined", "incorrect_cvc"),
    ("card_declined", "issuer_declined", "stolen_card"),
    ("card_declined", "blocked", "highest_risk_level"),
    ("expired_card", "issuer_declined", "expired_card"),
]
# Fewer expected payments than this in a silent span: chance alone empties such spans.
MIN_PAYMENTS_FOR_SILENCE = 10


@dataclass(frozen=True)
class Incident:
    """Something a merchant must hear about: found when an anomaly of `rule` (and `scope`, if
    set) at `needs` or above overlaps [start, end] +-30 minutes."""

    kind: str
    rule: str
    start: datetime
    end: datetime
    needs: str = "low"
    scope: str | None = None
    below_data: str | None = None  # why the data cannot show it; then it is not scored


@dataclass(frozen=True)
class Benign:
    """A shape of ordinary traffic that must raise nothing."""

    kind: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Change:
    """Baseline traffic in [start, end) changed: volume x `volume`, and a failure rate rising
    to `fail_rate` (ramped up and down over a third of the span each if `ramp`)."""

    start: datetime
    end: datetime
    volume: float = 1.0
    fail_rate: float | None = None
    failures: list[Failure] = field(default_factory=list)
    ramp: bool = False

    def rate_at(self, t: float) -> float:
        assert self.fail_rate is not None
        if not self.ramp:
            return self.fail_rate
        x = (t - self.start.timestamp()) / (self.end - self.start).total_seconds()
        return self.fail_rate * min(1.0, 3 * min(x, 1 - x))


@dataclass(frozen=True)
class Burst:
    """`count` extra units of `unit` spread over [start, end)."""

    unit: str  # card_test, refund, dispute, churn, payment, failed_payment
    start: datetime
    end: datetime
    count: int
    currency: str = "usd"
    multiple: float = 1.0  # of the currency's average amount


@dataclass
class Plan:
    incidents: list[Incident] = field(default_factory=list)
    benign: list[Benign] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    rejections: list[tuple[datetime, str]] = field(default_factory=list)


FAIL_RATE = 0.04  # of ordinary payments declined
WINDOWS_A_MONTH = 288 * 30


def below_data(failed: int, attempts: int, how: str) -> str | None:
    """Why `failed` of `attempts` over 2 hours cannot show an incident, or None: when ordinary
    traffic at FAIL_RATE reaches that count by chance at least once a month, judged over
    every window of it."""
    p_value = binomial_sf(failed, attempts, FAIL_RATE)
    if p_value * WINDOWS_A_MONTH < 1:
        return None
    return (f"{how} {failed} of {attempts} attempts fail in its most telling 2 h where"
            f" {FAIL_RATE:.0%} is usual (p={p_value:.1e}): chance alone shows that about"
            f" {p_value * WINDOWS_A_MONTH:.0f}x a month")  # fmt: skip


def chance_could_show(
    change: Change, expected_payments: Callable[[datetime, datetime], float]
) -> str | None:
    """`below_data` of a failure-rate change's expected attempts and failures."""
    span = int((change.end - change.start).total_seconds() // 60)
    minutes = [change.start + timedelta(minutes=m) for m in range(span)]
    pays = [expected_payments(t, t + timedelta(minutes=1)) for t in minutes]
    rates = [max(change.rate_at(t.timestamp()), FAIL_RATE) for t in minutes]
    best = (1.0, 0, 0)
    for first in range(max(1, span - 120 + 1)):
        n = round(sum(pays[first : first + 120]))
        f = round(sum(p * r for p, r in zip(pays[first : first + 120], rates[first : first + 120],
                                             strict=True)))  # fmt: skip
        best = min(best, (binomial_sf(f, n, FAIL_RATE), n, f))
    _, n, f = best
    return below_data(f, n, "at best")


def plan(
    name: str,
    per_day: int,
    broken_checkout: bool,
    seed: int,
    history_from: datetime,
    evaluated_from: datetime,
    expected_payments: Callable[[datetime, datetime], float],
) -> Plan:
    """Where and how big each injection is, for a shape of `per_day` payments a day."""
    rng = random.Random(f"plan:{name}:{seed}")
    days = [evaluated_from + timedelta(days=d) for d in range(1, 29)]
    rng.shuffle(days)
    taken: set[datetime] = set()

    def at(first_hour: int, last_hour: int, weekday: bool = False) -> datetime:
        day = next(d for d in days if d not in taken and (d.weekday() < 5 or not weekday))
        taken.add(day)
        return day + timedelta(minutes=rng.randrange(first_hour * 60, last_hour * 60))

    p, out = per_day, Plan()

    def incident(kind: str, rule: str, start: datetime, minutes: int, **rest: object) -> datetime:
        end = start + timedelta(minutes=minutes)
        out.incidents.append(Incident(kind, rule, start, end, **rest))  # type: ignore[arg-type]
        return end

    failure = "payment_failure_spike"
    s = at(9, 18)
    minutes = 180 if p < 500 else 120
    spike = Change(s, s + timedelta(minutes=minutes), fail_rate=0.35, failures=ISSUER_DECLINES,
                   ramp=True)  # fmt: skip
    below = chance_could_show(spike, expected_payments)
    e = incident("failure spike", failure, s, minutes, needs="medium", below_data=below)
    out.changes.append(spike)
    s = at(0, 4)
    e = incident("card testing", failure, s, 45, needs="medium")
    out.bursts.append(Burst("card_test", s, e, 120 + p // 30))
    s = at(10, 20)
    outage = Change(s, s + timedelta(minutes=90 if p < 500 else 40), fail_rate=0.7,
                    failures=PROCESSING)  # fmt: skip
    below = chance_could_show(outage, expected_payments)
    incident("processor outage", failure, s, 90 if p < 500 else 40, needs="medium",
             below_data=below)  # fmt: skip
    out.changes.append(outage)
    if broken_checkout:
        s = at(13, 15, weekday=True)
        e = incident("broken checkout", failure, s, 180, needs="medium")
        out.changes.append(Change(s, e, fail_rate=1.0, failures=BLOCKED_BY_RULE))
    for currency, multiple in (("eur", 50), ("jpy", 80)):
        s = at(8, 22)
        incident(f"amount outlier {currency}", "amount_spike", s, 5, scope=currency)
        out.bursts.append(Burst("payment", s, s + timedelta(minutes=1), 1, currency, multiple))
    s = at(8, 20)
    e = incident("refund wave", "refund_spike", s, 60)
    out.bursts.append(Burst("refund", s, e, max(12, p // 30)))
    s = at(8, 20)
    e = incident("dispute wave", "dispute_spike", s, 120)
    out.bursts.append(Burst("dispute", s, e, max(5, p // 150)))
    s = at(8, 20)
    e = incident("churn burst", "churn_spike", s, 60)
    out.bursts.append(Burst("churn", s, e, max(12, p // 50)))
    s = at(13, 16, weekday=True)
    e = s + timedelta(minutes=45)
    expected = expected_payments(s, e)
    below = (
        f"~{expected:.0f} payments expected in 45 min: chance alone empties such spans"
        if expected < MIN_PAYMENTS_FOR_SILENCE
        else None
    )
    incident("45 min silence", "webhook_silence", s, 45, below_data=below)
    out.changes.append(Change(s, e, volume=0.0))
    s = at(0, 24)
    e = incident("invalid signatures", "webhook_integrity", s, 20)
    for _ in range(30 + p // 150):
        offset = timedelta(seconds=rng.randrange(int((e - s).total_seconds())))
        out.rejections.append((s + offset, "signature_mismatch"))

    s = at(16, 19)
    e = s + timedelta(hours=3)
    out.benign.append(Benign("flash sale 4x", s, e))
    out.changes.append(Change(s, e, volume=4.0))
    s = at(9, 20)
    out.benign.append(Benign("first payment in chf", s, s + timedelta(minutes=5)))
    out.bursts.append(Burst("payment", s, s + timedelta(minutes=1), 1, "chf"))
    s = at(1, 4)
    out.benign.append(Benign("one failed payment at night", s, s + timedelta(minutes=5)))
    out.bursts.append(Burst("failed_payment", s, s + timedelta(minutes=1), 1))

    # A scanner's stray attempt now and then, in both months: never an incident.
    day = history_from
    while day < evaluated_from + timedelta(days=30):
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            when = day + timedelta(seconds=rng.randrange(86400))
            out.rejections.append((when, rng.choice(("missing_header", "malformed_header"))))
        day += timedelta(days=1)
    out.rejections.sort()
    return out
