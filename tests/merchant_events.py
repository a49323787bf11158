"""The Stripe events of tests/merchants.py as COPY rows. One unit (a payment, a refund, a
dispute, a subscription change) becomes its events, each with Stripe's envelope and the
data.object fields the rollup and a diagnosis read: amounts, currency, customer, card
fingerprint, failure and decline codes, refund and dispute reasons. Nothing more, so a
4-million-event stream stays cheap to write and to load.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from tests.merchant_incidents import CARD_TESTING, Burst, Failure

API = "2026-07-29.dahlia"
# Log-normal amounts (minor units; JPY has none): sigma 0.7 puts a few payments a week at 8x the
# average for a medium shop, as real price lists and baskets do.
CURRENCIES = {"usd": (0.70, 4500), "eur": (0.18, 4000), "gbp": (0.08, 3500), "jpy": (0.04, 6000)}
SIGMA = 0.7
BASE_FAILURES: list[tuple[float, Failure]] = [
    (0.35, ("card_declined", "issuer_declined", "generic_decline")),
    (0.30, ("card_declined", "issuer_declined", "insufficient_funds")),
    (0.10, ("card_declined", "issuer_declined", "do_not_honor")),
    (0.08, ("incorrect_cvc", "issuer_declined", "incorrect_cvc")),
    (0.08, ("expired_card", "issuer_declined", "expired_card")),
    (0.07, ("card_declined", "blocked", "highest_risk_level")),
    (0.02, ("processing_error", "issuer_declined", "processing_error")),
]
BRANDS = ("visa", "mastercard", "visa", "amex")
REFUND_REASONS = ["requested_by_customer"] * 8 + ["duplicate", "fraudulent"]
DISPUTE_REASONS = ["fraudulent"] * 5 + ["product_not_received"] * 3 + ["unrecognized", "duplicate"]
RECENT = 5000  # refunds and disputes are about one of this many recent charges


def card(c: int) -> str:
    """A customer's card, the same on every payment (card tests use fresh numbers)."""
    fingerprint = f"{(c * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}"
    details = (
        f'"fingerprint":"{fingerprint}","brand":"{BRANDS[c % 4]}","last4":"{c * 37 % 10000:04d}"'
    )
    return f'"payment_method_details":{{"card":{{{details}}}}}'


class Units:
    """Renders units as (created, type, data.object) rows; the caller orders and writes them."""

    def __init__(self, customers: int, rng: random.Random) -> None:
        self.customers, self.rng, self.n = customers, rng, 0
        self.rows: list[tuple[int, str, str]] = []
        self.paid: list[tuple[int, int, str, int]] = []  # n, amount, currency, customer
        self.currencies = list(CURRENCIES)
        self.weights = [w for w, _ in CURRENCIES.values()]
        self.failures = [f for _, f in BASE_FAILURES]
        self.failure_weights = [w for w, _ in BASE_FAILURES]

    def amount(self, currency: str, multiple: float = 1.0) -> int:
        mean = CURRENCIES.get(currency, (0, 4500))[1]
        if multiple != 1.0:
            return round(mean * multiple)
        return max(50, round(math.exp(self.rng.gauss(math.log(mean) - SIGMA**2 / 2, SIGMA))))

    def base_failure(self) -> Failure:
        return self.rng.choices(self.failures, self.failure_weights)[0]

    def payment(self, t: int, failure: Failure | None, currency: str | None = None,
                amount: int | None = None, customer: int | None = None) -> None:  # fmt: skip
        """A charge and its PaymentIntent, both about one payment (the PI a second later)."""
        self.n += 1
        rng, n = self.rng, self.n
        cur = currency or rng.choices(self.currencies, self.weights)[0]
        amount = amount or self.amount(cur)
        cust = rng.randrange(self.customers) if customer is None else customer
        money = f'"amount":{amount},"currency":"{cur}","customer":"cus_{cust:010d}"'
        ch = f'"id":"ch_{n:016d}","object":"charge","payment_intent":"pi_{n:016d}",{money}'
        pi = f'"id":"pi_{n:016d}","object":"payment_intent",{money}'
        if failure is None:
            ok = '"status":"succeeded","outcome":{"type":"authorized","reason":null}'
            self.rows.append((t, "charge.succeeded", f"{ch},{ok},{card(cust)}"))
            latest = f'"amount_received":{amount},"latest_charge":"ch_{n:016d}"'
            self.rows.append(
                (t + 1, "payment_intent.succeeded", f'{pi},"status":"succeeded",{latest}')
            )
            if len(self.paid) < RECENT:
                self.paid.append((n, amount, cur, cust))
            else:
                self.paid[rng.randrange(RECENT)] = (n, amount, cur, cust)
            return
        code, kind, reason = failure
        outcome = f'"outcome":{{"type":"{kind}","reason":"{reason}"}}'
        failed = f'"status":"failed","failure_code":"{code}",{outcome}'
        self.rows.append((t, "charge.failed", f"{ch},{failed},{card(cust)}"))
        decline = "fraudulent" if kind == "blocked" else reason  # Radar blocks say fraudulent
        error = f'"code":"{code}","decline_code":"{decline}","charge":"ch_{n:016d}"'
        pending = '"amount_received":0,"status":"requires_payment_method"'
        failed_pi = f'{pi},{pending},"last_payment_error":{{{error}}}'
        self.rows.append((t + 1, "payment_intent.payment_failed", failed_pi))

    def refund(self, t: int, reason: str | None = None) -> None:
        """charge.refunded and refund.created: the rollup counts them as one refund."""
        if not self.paid:
            return
        self.n += 1
        rng = self.rng
        n, amount, cur, cust = self.paid[rng.randrange(len(self.paid))]
        refunded = amount if rng.random() < 0.85 else amount // 2
        about = f'"payment_intent":"pi_{n:016d}","currency":"{cur}","customer":"cus_{cust:010d}"'
        charge = f'"id":"ch_{n:016d}","object":"charge",{about},"amount":{amount},"refunded":true'
        self.rows.append((t, "charge.refunded", f'{charge},"amount_refunded":{refunded}'))
        refund = f'"id":"re_{self.n:016d}","object":"refund","charge":"ch_{n:016d}",{about}'
        why = reason or rng.choice(REFUND_REASONS)
        done = f'"amount":{refunded},"status":"succeeded","reason":"{why}"'
        self.rows.append((t, "refund.created", f"{refund},{done}"))

    def dispute(self, t: int, reason: str | None = None) -> None:
        if not self.paid:
            return
        self.n += 1
        n, amount, cur, _ = self.paid[self.rng.randrange(len(self.paid))]
        about = f'"charge":"ch_{n:016d}","payment_intent":"pi_{n:016d}"'
        money = f'"amount":{amount},"currency":"{cur}"'
        why = reason or self.rng.choice(DISPUTE_REASONS)
        dispute = f'"id":"dp_{self.n:016d}","object":"dispute",{about},{money}'
        opened = f'"status":"needs_response","reason":"{why}"'
        self.rows.append((t, "charge.dispute.created", f"{dispute},{opened}"))

    def subscription(self, t: int, kind: str) -> None:
        self.n += 1
        cust, sub = self.rng.randrange(self.customers), f"sub_{self.n:016d}"
        who = f'"customer":"cus_{cust:010d}","currency":"usd"'
        if kind == "invoice.payment_failed":
            due = f'"amount_due":{self.amount("usd")},"attempt_count":1'
            invoice = f'"id":"in_{self.n:016d}","object":"invoice",{who},"subscription":"{sub}"'
            self.rows.append((t, kind, f'{invoice},{due},"billing_reason":"subscription_cycle"'))
            return
        status = "canceled" if kind == "customer.subscription.deleted" else "active"
        self.rows.append(
            (t, kind, f'"id":"{sub}","object":"subscription",{who},"status":"{status}"')
        )

    def burst(self, t: int, b: Burst) -> None:
        """One unit an incident or benign shape adds."""
        if b.unit == "card_test":  # 50 cents on a fresh card each; about one in ten goes through
            fresh = self.customers + self.rng.getrandbits(40)
            failure = self.rng.choice(CARD_TESTING) if self.rng.random() < 0.9 else None
            self.payment(t, failure, "usd", 50, fresh)
        elif b.unit == "payment":
            self.payment(t, None, b.currency, self.amount(b.currency, b.multiple))
        elif b.unit == "failed_payment":
            self.payment(t, ("card_declined", "issuer_declined", "insufficient_funds"))
        elif b.unit == "refund":
            self.refund(t, "requested_by_customer")
        elif b.unit == "dispute":
            self.dispute(t, "fraudulent")
        elif b.unit == "churn":
            kinds = ("customer.subscription.deleted", "invoice.payment_failed")
            self.subscription(t, self.rng.choice(kinds))


class Writer:
    """COPY text rows; Stripe's `created` is whole seconds, so times are per-day and
    per-second-of-day strings (as in benchmarks/rules_history.py), not datetime formatting."""

    def __init__(self, start: datetime, days: int) -> None:
        self.days = [(start + timedelta(days=d)).strftime("%Y-%m-%d ") for d in range(days + 2)]
        self.hms = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]
        self.base = int(start.timestamp())
        self.lines: list[str] = []
        self.events = 0

    def ts(self, t: int) -> str:
        s = t - self.base
        return self.days[s // 86400] + self.hms[s % 86400]

    def add(self, t: int, kind: str, obj: str) -> None:
        self.events += 1
        eid = f"evt_{self.events:024d}"
        received = self.ts(t + 1 + self.events * 7 % 5)  # delivered 1-5 s later
        payload = (
            f'{{"id":"{eid}","object":"event","api_version":"{API}","created":{t},'
            f'"livemode":true,"type":"{kind}","data":{{"object":{{{obj}}}}}}}'
        )
        self.lines.append(
            f"{eid}\t{kind}\t{self.ts(t)}\t{received}\t{received}\tt\t{API}\t{payload}\n"
        )
