"""Deterministic, seeded Stripe traffic of three merchant shapes over 60 days: 30 days of
history (what baselines stand on), then an evaluated month holding the injected incidents and
benign shapes of tests/merchant_incidents.py (their events: tests/merchant_events.py).

    stream = generate(SHAPES["small"], seed=1)
    load(conn, stream)            # COPY into stripe_events, rejections into webhook_rejections
    stream.incidents              # kind, rule, start, end, needs, scope, below_data

The same shape and seed give byte-identical rows. Traffic is a Poisson stream per 5-minute
window around a daily, weekly and growth curve, with day and hour noise; refunds follow
payments (a flash sale's refunds grow with its orders), disputes and churn follow the usual
volume.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import psycopg

from tests.merchant_events import Units, Writer
from tests.merchant_incidents import FAIL_RATE, Benign, Burst, Change, Incident, Plan, plan

END = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, like benchmarks/rules_history.py
DAYS = 60
START = END - timedelta(days=DAYS)
EVALUATED_FROM = END - timedelta(days=30)
WINDOW_S = 300
COPY = (
    "COPY stripe_events (id, type, created, received_at, last_received_at, livemode,"
    " api_version, payload) FROM STDIN"
)
REFUND_RATE = 0.02
SUBS_CREATED, SUBS_CANCELLED, INVOICES_FAILED = 0.015, 0.012, 0.008  # per payment


@dataclass(frozen=True)
class Shape:
    name: str
    payments_per_day: int
    daily_swing: float  # amplitude of the daily cycle, peaking at 15:00 UTC
    weekend: float  # weekend traffic relative to weekdays
    growth: float  # over the 60 days
    dispute_rate: float  # per payment
    customers: int
    broken_checkout: bool = False  # also inject a checkout that declines everything

    def rate(self, t: float) -> float:
        """Expected payments per second at epoch second `t`, before noise and incidents."""
        at = datetime.fromtimestamp(t, UTC)
        hour = at.hour + at.minute / 60
        daily = 1 + self.daily_swing * math.cos(2 * math.pi * (hour - 15) / 24)
        weekly = (self.weekend if at.weekday() >= 5 else 1.0) * 7 / (5 + 2 * self.weekend)
        growth = (1 + self.growth) ** ((t - START.timestamp()) / (DAYS * 86400) - 0.5)
        return self.payments_per_day / 86400 * daily * weekly * growth

    def expected_payments(self, start: datetime, end: datetime) -> float:
        minutes = range(int(start.timestamp()), int(end.timestamp()), 60)
        return sum(self.rate(t + 30) * 60 for t in minutes)


SHAPES = {
    s.name: s
    for s in (
        Shape("small", 100, 0.5, 0.9, 0.0, 0.002, 3_000, broken_checkout=True),
        Shape("medium", 2_000, 0.6, 0.7, 0.30, 0.0015, 40_000),
        Shape("large", 30_000, 0.6, 0.8, 0.05, 0.001, 400_000),
    )
}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam < 30:
        n, p, limit = 0, 1.0, math.exp(-lam)
        while (p := p * rng.random()) > limit:
            n += 1
        return n
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


@dataclass(frozen=True)
class Stream:
    shape: Shape
    seed: int
    plan: Plan

    @property
    def incidents(self) -> list[Incident]:
        return self.plan.incidents

    @property
    def benign(self) -> list[Benign]:
        return self.plan.benign

    @cached_property
    def _changes(self) -> list[tuple[int, int, Change]]:
        return [(int(c.start.timestamp()), int(c.end.timestamp()), c) for c in self.plan.changes]

    def _bursts(self, rng: random.Random) -> dict[int, list[tuple[int, Burst]]]:
        """The bursts' units by window index, at random times in their spans."""
        base, out = int(START.timestamp()), {}
        for b in self.plan.bursts:
            first, span = int(b.start.timestamp()), int((b.end - b.start).total_seconds())
            for t in sorted(first + rng.randrange(span) for _ in range(b.count)):
                out.setdefault((t - base) // WINDOW_S, []).append((t, b))
        return out

    def chunks(self) -> Iterator[str]:
        """COPY text for stripe_events, a day at a time, in event-time order."""
        rng = random.Random(f"events:{self.shape.name}:{self.seed}")
        units, w, shape = Units(self.shape.customers, rng), Writer(START, DAYS), self.shape
        bursts, base = self._bursts(rng), int(START.timestamp())
        subs = [("customer.subscription.created", SUBS_CREATED),
                ("customer.subscription.deleted", SUBS_CANCELLED),
                ("invoice.payment_failed", INVOICES_FAILED)]  # fmt: skip
        day_noise = hour_noise = 1.0
        for i in range(DAYS * 86400 // WINDOW_S):
            ws = base + i * WINDOW_S
            if i % 288 == 0:
                day_noise = math.exp(rng.gauss(0, 0.05))
            if i % 12 == 0:
                hour_noise = math.exp(rng.gauss(0, 0.08))
            volume, failing = 1.0, None
            for first, last, c in self._changes:
                if first <= ws < last:
                    volume *= c.volume
                    failing = c if c.fail_rate is not None else failing
            usual = shape.rate(ws + WINDOW_S // 2) * WINDOW_S * day_noise * hour_noise
            if volume > 0:  # a silent span has no events at all
                for _ in range(_poisson(rng, usual * volume)):
                    t, r = ws + rng.randrange(WINDOW_S - 1), rng.random()
                    failure = units.base_failure() if r < FAIL_RATE else None
                    if failing and failure is None and r < failing.rate_at(t):
                        failure = rng.choice(failing.failures)
                    units.payment(t, failure)
                for _ in range(_poisson(rng, usual * volume * REFUND_RATE)):  # with orders
                    units.refund(ws + rng.randrange(WINDOW_S))
                for _ in range(_poisson(rng, usual * shape.dispute_rate)):
                    units.dispute(ws + rng.randrange(WINDOW_S))
                for kind, share in subs:
                    for _ in range(_poisson(rng, usual * share)):
                        units.subscription(ws + rng.randrange(WINDOW_S), kind)
                for t, b in bursts.get(i, ()):
                    units.burst(t, b)
            for t, kind, obj in sorted(units.rows, key=lambda row: row[0]):
                w.add(t, kind, obj)
            units.rows.clear()
            if i % 288 == 287:
                yield "".join(w.lines)
                w.lines.clear()

    def rows(self) -> Iterator[str]:
        for chunk in self.chunks():
            yield from chunk.splitlines(keepends=True)

    def events(self) -> Iterator[dict]:
        """The events as Stripe sent them (the payload column)."""
        for row in self.rows():
            yield json.loads(row.rstrip("\n").split("\t")[7])


def generate(shape: Shape | str, seed: int) -> Stream:
    """The 60-day stream of `shape` (or its name) for `seed`; nothing is generated until read."""
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    placed = plan(shape.name, shape.payments_per_day, shape.broken_checkout, seed, START,
                  EVALUATED_FROM, shape.expected_payments)  # fmt: skip
    return Stream(shape, seed, placed)


def load(conn: psycopg.Connection, stream: Stream, freeze: bool = False) -> int:
    """COPY the stream into stripe_events and its rejected attempts into webhook_rejections;
    returns the events written. `freeze` needs the table truncated in this transaction."""
    events = 0
    with conn.cursor() as cur:
        with cur.copy(COPY + (" (FREEZE)" if freeze else "")) as copy:
            for chunk in stream.chunks():
                copy.write(chunk)
                events += chunk.count("\n")
        cur.executemany(
            "INSERT INTO webhook_rejections (received_at, reason, client_addr, body_size)"
            " VALUES (%s, %s, %s, %s)",
            [
                (at, reason, f"198.51.100.{i % 250 + 1}", 1400 + i % 600)
                for i, (at, reason) in enumerate(stream.plan.rejections)
            ],
        )
    return events
