"""Event streams built from the shared Stripe fixtures, for the rule tests.

Each builder copies a real fixture and changes only what makes it a distinct event: its id,
its event time and the id of the object it is about (and an amount where that matters).
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import datetime, timedelta

import psycopg

from tests.support import fixture_event

_ids = itertools.count(1)
_templates: dict[str, dict] = {}


def _event(fixture: str, at: datetime, **obj: object) -> dict:
    if fixture not in _templates:
        _templates[fixture] = fixture_event(fixture)
    event = copy.deepcopy(_templates[fixture])
    event["id"] = f"evt_stream{next(_ids):012d}"
    event["created"] = int(at.timestamp())
    event["data"]["object"].update(obj)
    return event


def failed_payment(at: datetime, n: str) -> list[dict]:
    """A declined card payment: Stripe sends both events for the one PaymentIntent."""
    return [
        _event("charge.failed.json", at, id=f"ch_{n}", payment_intent=f"pi_{n}"),
        _event("payment_intent.payment_failed.json", at + timedelta(seconds=1), id=f"pi_{n}"),
    ]


def succeeded_payment(at: datetime, n: str, amount: int = 1099, currency: str = "usd") -> list:
    return [
        _event("charge.succeeded.json", at, id=f"ch_{n}", payment_intent=f"pi_{n}",
               amount=amount, currency=currency),
        _event("payment_intent.succeeded.json", at + timedelta(seconds=1), id=f"pi_{n}",
               amount=amount, amount_received=amount, currency=currency),
    ]  # fmt: skip


def dispute(at: datetime, n: str) -> list[dict]:
    return [_event("charge.dispute.created.json", at, id=f"dp_{n}")]


def refund(at: datetime, n: str) -> list[dict]:
    return [_event("charge.refunded.json", at, id=f"ch_r{n}")]


def cancellation(at: datetime, n: str) -> list[dict]:
    return [_event("customer.subscription.deleted.json", at, id=f"sub_{n}")]


def normal_traffic(start: datetime, hours: int, per_window: int = 6) -> list[dict]:
    """Steady payments: `per_window` every 5 minutes, one in twelve windows with a decline."""
    events = []
    for w in range(hours * 12):
        at = start + timedelta(minutes=5 * w)
        for p in range(per_window):
            amount = 1000 + (w * 7 + p * 13) % 400
            events += succeeded_payment(at + timedelta(seconds=20 * p), f"n{w}_{p}", amount)
        if w % 12 == 0:
            events += failed_payment(at + timedelta(seconds=150), f"nf{w}")
    return events


def failure_spike(start: datetime, minutes: int, attempts: int = 20, failing: int = 12) -> list:
    """`attempts` payments per window for `minutes`, `failing` of them declined."""
    events = []
    for w in range(minutes // 5):
        at = start + timedelta(minutes=5 * w)
        for p in range(attempts):
            builder = failed_payment if p < failing else succeeded_payment
            events += builder(at + timedelta(seconds=10 * p), f"s{w}_{p}_{start.timestamp():.0f}")
    return events


INSERT = """
INSERT INTO stripe_events (id, type, created, livemode, api_version, payload, received_at)
VALUES (%s, %s, to_timestamp(%s), %s, %s, %s::jsonb, coalesce(%s, now()))
ON CONFLICT (id) DO NOTHING
"""


def row(e: dict, received_at: datetime | None = None) -> tuple:
    """INSERT's parameters for one event."""
    return (e["id"], e["type"], e["created"], e["livemode"], e["api_version"], json.dumps(e),
            received_at)  # fmt: skip


def store(url: str, events: list[dict], received_at: datetime | None = None) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(INSERT, [row(e, received_at) for e in events])


def declined_payment(
    at: datetime, n: str, *, failure_code: str | None = "card_declined",
    decline_code: str | None = "generic_decline", amount: int = 1099, currency: str = "usd",
    fingerprint: str | None = None, customer: str | None = None,
) -> list[dict]:  # fmt: skip
    """A failed card payment with its codes, amount, card and customer: the charge and its
    PaymentIntent's last_payment_error agree, as Stripe sends them. The card keeps the
    fixture's fingerprint unless one is given."""
    charge = _event("charge.failed.json", at, id=f"ch_{n}", payment_intent=f"pi_{n}",
                    amount=amount, currency=currency, customer=customer,
                    failure_code=failure_code)  # fmt: skip
    charge["data"]["object"]["outcome"]["reason"] = decline_code
    if fingerprint is not None:
        charge["data"]["object"]["payment_method_details"]["card"]["fingerprint"] = fingerprint
    error = {"type": "card_error", "code": failure_code, "decline_code": decline_code}
    intent = _event("payment_intent.payment_failed.json", at + timedelta(seconds=1), id=f"pi_{n}",
                    amount=amount, currency=currency, customer=customer,
                    last_payment_error=error)  # fmt: skip
    return [charge, intent]


def reasoned_refund(at: datetime, n: str, reason: str | None, amount: int = 100) -> list[dict]:
    """A refund with its reason: charge.refunded listing the refund, and refund.created (Stripe's
    example refund object in the charge.refunded envelope), both about the charge `ch_r{n}`."""
    refund = {**fixture_event("raw/refund.json"), "id": f"re_{n}", "charge": f"ch_r{n}",
              "reason": reason, "amount": amount}  # fmt: skip
    charge = _event("charge.refunded.json", at, id=f"ch_r{n}", amount=amount,
                    amount_refunded=amount)  # fmt: skip
    charge["data"]["object"]["refunds"]["data"] = [refund]
    created = _event("charge.refunded.json", at + timedelta(seconds=1))
    created["type"] = "refund.created"
    created["data"]["object"] = copy.deepcopy(refund)
    return [charge, created]


def reasoned_dispute(at: datetime, n: str, reason: str, amount: int = 1000) -> list[dict]:
    return [_event("charge.dispute.created.json", at, id=f"dp_{n}", reason=reason, amount=amount)]
