"""The synthetic Stripe history of benchmarks/rules.py, streamed into stripe_events by text COPY.

Events are spread over the DAYS days before END with a daily and weekly rhythm, in event-time
order (as a webhook stores them), so every index of the migrated table grows at its right edge.
One "unit" is one thing happening at Stripe: a payment emits its charge and PaymentIntent events
(one payment, two events), a refund charge.refunded and refund.created (one refund). Payloads
keep the envelope and only the data.object fields the rollup reads.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

END = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so every run sees the same windows
DAYS = 30
WINDOW_S = 300
START = END - timedelta(days=DAYS)
API = "2026-07-29.dahlia"
SEED = 20261101

# Share of units per kind, and events per unit: ~5% of payments declined, ~2% refunded,
# ~0.1% disputed; subscriptions churn at a few percent.
UNITS = {
    "succeeded": (0.80, 2),
    "failed": (0.042, 2),
    "refund": (0.016, 2),
    "dispute": (0.0008, 1),
    "sub_created": (0.03, 1),
    "sub_deleted": (0.02, 1),
    "invoice_failed": (0.01, 1),
}
KINDS = list(UNITS)
CUM_WEIGHTS = list(itertools.accumulate(w for w, _ in UNITS.values()))
EVENTS_PER_UNIT = sum(w * n for w, n in UNITS.values()) / CUM_WEIGHTS[-1]
CURRENCIES = ["usd", "eur", "gbp", "jpy"]
CURRENCY_CUM = [0.70, 0.88, 0.96, 1.0]
# A SaaS price list (minor units; JPY has none): the dearest plan is ~3x the average, so the
# amount rule (5x the 30-day average) stays quiet except for the rare enterprise invoice.
PRICES = {c: [900, 1900, 2900, 4900, 9900] for c in ("usd", "eur", "gbp")}
PRICES["jpy"] = [1500, 3000, 5000, 10000, 15000]
PRICE_CUM = [0.30, 0.55, 0.75, 0.90, 1.0]
OUTLIER_EVERY = 100_000  # one payment in this many is an invoice 30x its plan
COPY = (
    "COPY stripe_events (id, type, created, received_at, last_received_at, livemode,"
    " api_version, payload) FROM STDIN (FREEZE)"
)
CHUNK = 16384  # rows per copy.write (~5 MB)


def traffic(window: int) -> float:
    """Relative traffic of a window: peaks at 15:00 UTC, 40% of it at night, quieter weekends."""
    at = START + timedelta(seconds=window * WINDOW_S)
    hour = at.hour + at.minute / 60
    weekend = 0.75 if at.weekday() >= 5 else 1.0
    return (1 + 0.6 * math.cos(2 * math.pi * (hour - 15) / 24)) * weekend


class Writer:
    """Formats rows of COPY text: Stripe's `created` is whole seconds, so times come from
    per-day and per-second-of-day strings instead of datetime formatting."""

    def __init__(self) -> None:
        days = DAYS + 2
        self.days = [(START + timedelta(days=d)).strftime("%Y-%m-%d ") for d in range(days)]
        self.hms = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]
        self.base = int(START.timestamp())
        self.lines: list[str] = []
        self.events = 0

    def ts(self, t: int) -> str:
        s = t - self.base
        return self.days[s // 86400] + self.hms[s % 86400]

    def add(self, t: int, delay: int, kind: str, obj: str) -> None:
        self.events += 1
        eid = f"evt_{self.events:024d}"
        received = self.ts(t + delay)
        payload = (
            f'{{"id":"{eid}","object":"event","api_version":"{API}","created":{t},'
            f'"livemode":true,"type":"{kind}","data":{{"object":{{{obj}}}}}}}'
        )
        self.lines.append(
            f"{eid}\t{kind}\t{self.ts(t)}\t{received}\t{received}\tt\t{API}\t{payload}\n"
        )


def _unit(w: Writer, rng: random.Random, kind: str, n: int, t: int) -> None:
    delay = 1 + int(rng.random() * 4)
    pi, ch = f"pi_{n:024d}", f"ch_{n:024d}"
    cur = CURRENCIES[bisect.bisect_left(CURRENCY_CUM, rng.random())]
    if kind in ("succeeded", "failed"):
        price = PRICES[cur][bisect.bisect_left(PRICE_CUM, rng.random())]
        amount = price + int(price * 0.2 * rng.random())  # sales tax, seats
        if kind == "succeeded" and rng.randrange(OUTLIER_EVERY) == 0:
            amount *= 30
        money = f'"currency":"{cur}","amount":{amount}'
        charge_type, pi_type = (
            ("charge.succeeded", "payment_intent.succeeded")
            if kind == "succeeded"
            else ("charge.failed", "payment_intent.payment_failed")
        )
        received = amount if kind == "succeeded" else 0
        w.add(t, delay, charge_type,
              f'"id":"{ch}","object":"charge","payment_intent":"{pi}",{money}')  # fmt: skip
        w.add(t + 1, delay, pi_type, f'"id":"{pi}","object":"payment_intent",{money},'
              f'"amount_received":{received}')  # fmt: skip
        return
    old = rng.randrange(max(1, n))  # refunds and disputes are about an earlier payment
    about = f'"charge":"ch_{old:024d}","payment_intent":"pi_{old:024d}"'
    money = f'"currency":"{cur}","amount":{PRICES[cur][2]}'
    if kind == "refund":
        w.add(t, delay, "charge.refunded", f'"id":"ch_{old:024d}","object":"charge",'
              f'"payment_intent":"pi_{old:024d}",{money}')  # fmt: skip
        w.add(t, delay, "refund.created", f'"id":"re_{n:024d}","object":"refund",{about},{money}')
    elif kind == "dispute":
        w.add(t, delay, "charge.dispute.created", f'"id":"dp_{n:024d}","object":"dispute",'
              f"{about},{money}")  # fmt: skip
    elif kind == "sub_created":
        w.add(t, delay, "customer.subscription.created",
              f'"id":"sub_{n:024d}","object":"subscription","currency":"{cur}"')  # fmt: skip
    elif kind == "sub_deleted":
        w.add(t, delay, "customer.subscription.deleted",
              f'"id":"sub_{old:024d}","object":"subscription","currency":"{cur}"')  # fmt: skip
    else:
        w.add(t, delay, "invoice.payment_failed",
              f'"id":"in_{n:024d}","object":"invoice","currency":"{cur}"')  # fmt: skip


def generate(events: int, copy: psycopg.Copy) -> int:
    """Stream about `events` events (units are whole) to `copy`; returns the rows written."""
    rng = random.Random(SEED)
    windows = DAYS * 86400 // WINDOW_S
    weights = [traffic(i) for i in range(windows)]
    total_units, scale = events / EVENTS_PER_UNIT, 1 / sum(weights)
    w, n, cum, done = Writer(), 0, 0.0, 0
    for i, weight in enumerate(weights):
        cum += weight * scale
        count = round(cum * total_units) - done
        done += count
        base = w.base + i * WINDOW_S
        offsets = sorted(int(rng.random() * WINDOW_S) for _ in range(count))
        kinds = rng.choices(KINDS, cum_weights=CUM_WEIGHTS, k=count)
        for offset, kind in zip(offsets, kinds, strict=True):
            n += 1
            _unit(w, rng, kind, n, base + offset)
        if len(w.lines) >= CHUNK:
            copy.write("".join(w.lines))
            w.lines.clear()
    copy.write("".join(w.lines))
    return w.events


SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = 'stripe_events' AND indexname <> 'stripe_events_pkey'
"""


def load(url: str, events: int) -> dict[str, float]:
    """Replace the history with a fresh one: the migration's secondary indexes dropped, COPY
    FREEZE into the truncated table (the primary key stays: ids arrive in order), the indexes
    rebuilt from their own definitions, a few rejected webhooks, then VACUUM ANALYZE."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE stripe_events, webhook_rejections, window_metrics,"
                     " window_amounts, anomalies CASCADE")  # fmt: skip
        indexes = conn.execute(SECONDARY_INDEXES).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        with conn.cursor().copy(COPY) as copy:
            rows = generate(events, copy)
        copied = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")  # this session's index builds only
        for _, definition in indexes:
            conn.execute(definition)
        # One rejected attempt per ~2,000 events, scattered: the rollup joins them by receipt time.
        conn.execute(
            "INSERT INTO webhook_rejections (received_at, reason, client_addr, body_size)"
            " SELECT %(start)s + random() * interval '30 days', 'signature_mismatch',"
            " '127.0.0.1', 900 FROM generate_series(1, %(n)s)",
            {"start": START, "n": max(1, rows // 2000)},
        )
    indexed = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_total_relation_size('stripe_events')").fetchone()
    done = time.perf_counter()
    return {
        "rows": rows,
        "copy_s": copied - started,
        "index_s": indexed - copied,
        "vacuum_s": done - indexed,
        "load_s": done - started,
        "table_gb": (size[0] if size else 0) / 2**30,
    }
