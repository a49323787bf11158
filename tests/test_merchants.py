"""The merchant traffic generator of benchmarks/detection.py: seeded, and shaped as it says."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime

from tests.merchants import DAYS, EVALUATED_FROM, SHAPES, generate


def _digest(seed: int) -> str:
    digest = hashlib.sha256()
    for chunk in generate("small", seed).chunks():
        digest.update(chunk.encode())
    return digest.hexdigest()


class TestMerchantStreams:
    def test_the_same_seed_gives_the_same_stream_and_another_seed_another(self):
        assert _digest(1) == _digest(1)
        assert _digest(1) != _digest(2)

    def test_the_small_shop_takes_about_a_hundred_payments_a_day(self):
        intents = {
            e["data"]["object"]["id"]
            for e in generate("small", 1).events()
            if e["type"].startswith("payment_intent.")
        }
        assert 80 * DAYS < len(intents) < 130 * DAYS

    def test_incidents_fall_in_the_evaluated_month_on_days_of_their_own(self):
        stream = generate(SHAPES["small"], 1)
        days = Counter(i.start.date() for i in stream.incidents)
        assert all(i.start >= EVALUATED_FROM for i in stream.incidents)
        assert max(days.values()) == 1
        assert {i.kind for i in stream.incidents} >= {"broken checkout", "card testing"}

    def test_a_declined_charge_says_why_and_with_which_card(self):
        failed = next(e for e in generate("small", 1).events() if e["type"] == "charge.failed")
        charge = failed["data"]["object"]
        assert charge["failure_code"] and charge["outcome"]["reason"]
        assert charge["payment_method_details"]["card"]["fingerprint"]
        assert charge["customer"].startswith("cus_")
        assert datetime.fromtimestamp(failed["created"], UTC) < EVALUATED_FROM
