"""Diagnosis of spikes from their raw events: what kind of failure spike it is (card testing, a
processor outage, issuer declines), the main reason of a refund or dispute spike, and that no
card, card holder or customer value reaches an anomaly."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sentinelops_pipelines.rules import diagnosis
from sentinelops_pipelines.rules.diagnosis import Amounts, FailureStats, ReasonStats, TopCounts
from sentinelops_pipelines.rules.metrics import METRIC_TYPES
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.storage.diagnosis import failure_stats, reason_stats
from tests import streams
from tests.pipelines.test_rule_assets import run_range
from tests.support import fixture_event

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SPIKE = T0 + timedelta(hours=2)
FIXTURE_CARD = fixture_event("charge.failed.json")["data"]["object"]["payment_method_details"]
# What the stored events hold that must never reach an anomaly.
NEVER_SHOWN = [FIXTURE_CARD["card"]["fingerprint"], f'"{FIXTURE_CARD["card"]["last4"]}"',
               "Jenny Rosen", "fp_tester_", "cus_"]  # fmt: skip


def burst(per_window: int, failing: int, declined, succeeded=streams.succeeded_payment) -> list:
    """30 minutes from SPIKE: `per_window` attempts every 5 minutes, `failing` of them failed,
    made by `declined(at, n, i)` where i counts the failed attempts from 0."""
    events, i = [], 0
    for w in range(6):
        for p in range(per_window):
            at, n = SPIKE + timedelta(minutes=5 * w, seconds=20 * p), f"b{w}_{p}"
            if p < failing:
                events += declined(at, n, i)
                i += 1
            else:
                events += succeeded(at, n)
    return events


def card_testing(at, n, i):
    # Ten in eleven at 0.50 EUR, every attempt on a card of its own and no customer.
    amount = 100 if i % 11 == 10 else 50
    code = ("generic_decline", "incorrect_cvc", "card_velocity_exceeded")[i % 3]
    return streams.declined_payment(at, n, decline_code=code, amount=amount, currency="eur",
                                    fingerprint=f"fp_tester_{i:04d}")  # fmt: skip


def processor_outage(at, n, i):
    return streams.declined_payment(at, n, failure_code="processing_error", decline_code=None,
                                    amount=2500 + 100 * (i % 7), fingerprint=f"fp_tester_{i:04d}",
                                    customer=f"cus_{i:04d}")  # fmt: skip


ISSUER_CODES = "generic_decline insufficient_funds do_not_honor expired_card lost_card".split()


def issuer_declines(at, n, i):
    return streams.declined_payment(at, n, decline_code=ISSUER_CODES[i % 5], amount=4900,
                                    fingerprint=f"fp_tester_{i:04d}",
                                    customer=f"cus_{i:04d}")  # fmt: skip


def anomaly(db, rule: str) -> tuple[str, dict]:
    rows = db.execute("SELECT title, evidence FROM anomalies WHERE rule = %s", (rule,)).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def stored_anomaly_text(db) -> str:
    """Everything recorded about anomalies, as one text: titles, evidence, history notes."""
    parts = db.execute(
        "SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]') || coalesce((SELECT jsonb_agg(evidence)"
        " FROM anomaly_windows), '[]') || coalesce((SELECT jsonb_agg(note) FROM anomaly_history),"
        " '[]') FROM anomalies a"
    ).fetchone()[0]
    return json.dumps(parts)


@pytest.fixture
def quiet_history(database_url):
    """Two hours of steady payments before SPIKE (with their occasional decline on the
    fixture's card), so every rule has ordinary traffic to judge the spike against."""
    streams.store(database_url, streams.normal_traffic(T0, hours=2))


def run_through_spike(database_url):
    result = run_range(database_url, T0, SPIKE + timedelta(minutes=25))
    assert result.success


class TestFailureSpikeDiagnosis:
    """What a user sees on a failure spike's anomaly, for each kind of spike."""

    def test_a_card_testing_burst_says_card_testing(self, database_url, db, quiet_history):
        streams.store(database_url, burst(12, 11, card_testing))
        run_through_spike(database_url)

        title, evidence = anomaly(db, "payment_failure_spike")
        assert re.fullmatch(
            r"Card testing suspected: \d+ of \d+ attempts declined, 9 in 10 at 0\.50 EUR", title
        ), title
        found = evidence["diagnosis"]
        assert found["classification"] == "card_testing"
        assert found["failed"] >= 11 and found["attempts"] > found["failed"]
        assert found["failed_amounts"]["currency"] == "eur"
        assert found["failed_amounts"]["most_common"] == 50
        assert found["cards"]["distinct_share"] >= 0.9
        assert "0.50 EUR" in found["reason"]
        codes = {c["code"] for c in found["decline_codes"]["top"]}
        assert {"generic_decline", "incorrect_cvc"} <= codes
        text = stored_anomaly_text(db)
        assert [s for s in NEVER_SHOWN if s in text] == []

    def test_a_processor_outage_names_its_code(self, database_url, db, quiet_history):
        streams.store(database_url, burst(12, 11, processor_outage))
        run_through_spike(database_url)

        title, evidence = anomaly(db, "payment_failure_spike")
        assert re.fullmatch(
            r"Processor outage suspected: \d+ of \d+ attempts failed with processing_error", title
        ), title
        found = evidence["diagnosis"]
        assert found["classification"] == "processor_outage"
        assert found["failure_codes"]["top"][0]["code"] == "processing_error"
        assert found["customers"]["distinct_share"] >= 0.9
        assert [s for s in NEVER_SHOWN if s in stored_anomaly_text(db)] == []

    def test_declines_spread_over_issuers_reasons_are_issuer_declines(
        self, database_url, db, quiet_history
    ):
        streams.store(database_url, burst(12, 11, issuer_declines))
        run_through_spike(database_url)

        title, evidence = anomaly(db, "payment_failure_spike")
        assert re.fullmatch(r"Issuer declines: \d+ of \d+ attempts declined \(.+\)", title), title
        assert "generic_decline" in title
        found = evidence["diagnosis"]
        assert found["classification"] == "issuer_declines"
        assert len(found["decline_codes"]["top"]) == 5
        assert found["failed_amounts"]["median"] == 4900
        assert [s for s in NEVER_SHOWN if s in stored_anomaly_text(db)] == []


class TestCountSpikeDiagnosis:
    def test_a_refund_spike_names_its_main_reason(self, database_url, db, quiet_history):
        events = []
        for i in range(30):
            reason = "duplicate" if i % 5 else "requested_by_customer"
            events += streams.reasoned_refund(SPIKE + timedelta(minutes=i), f"d{i}", reason, 2900)
        streams.store(database_url, events)
        run_through_spike(database_url)

        title, evidence = anomaly(db, "refund_spike")
        assert re.search(r", \d+ of them duplicate$", title), title
        found = evidence["diagnosis"]
        assert found["main_reason"] == "duplicate"
        assert found["reasons"]["top"][0]["code"] == "duplicate"
        assert found["amounts"]["median"] == 2900

    def test_a_dispute_spike_names_its_main_reason(self, database_url, db, quiet_history):
        events = []
        for i in range(12):
            reason = "fraudulent" if i % 4 else "product_not_received"
            events += streams.reasoned_dispute(SPIKE + timedelta(minutes=2 * i), f"d{i}", reason)
        streams.store(database_url, events)
        run_through_spike(database_url)

        title, evidence = anomaly(db, "dispute_spike")
        assert re.search(r", \d+ of them fraudulent$", title), title
        assert evidence["diagnosis"]["reasons"]["top"][0]["code"] == "fraudulent"
        assert evidence["diagnosis"]["amounts"]["currency"] == "usd"


def test_a_window_already_recorded_is_not_diagnosed_again(db):
    from sentinelops_pipelines.storage.anomalies import record

    diagnosed: list[Finding] = []

    def diagnose(finding: Finding) -> Finding:
        diagnosed.append(finding)
        return finding

    finding = Finding.of_account("payment_failure_spike", SPIKE, "medium", "t", evidence={})
    # A re-run of the same range (a sensor's, a backfill's) meets the window again.
    outcomes = [record(db, finding, timedelta(minutes=30), diagnose=diagnose) for _ in range(3)]
    assert outcomes == ["opened", "unchanged", "unchanged"]
    assert len(diagnosed) == 1
    # A worse verdict for the same window is written, so it is diagnosed.
    assert record(db, replace(finding, severity="high"), timedelta(minutes=30),
                  diagnose=diagnose) == "escalated"  # fmt: skip
    assert len(diagnosed) == 2


def test_an_incident_opened_unclassified_takes_the_first_diagnosis_that_tells_it(db):
    from sentinelops_pipelines.storage.anomalies import record

    def finding(minutes: int, kind: str) -> Finding:
        return Finding.of_account(
            "payment_failure_spike", SPIKE + timedelta(minutes=minutes), "medium", f"{kind} title",
            evidence={"diagnosis": {"classification": kind}},
        )  # fmt: skip

    # Too few failures to tell in the first window; card testing in the next; a later window
    # that reads differently at the same severity does not rename the incident again.
    outcomes = [record(db, finding(m, kind), timedelta(minutes=30)) for m, kind in
                ((0, "unclassified"), (5, "card_testing"), (10, "issuer_declines"))]  # fmt: skip
    assert outcomes == ["opened", "extended", "extended"]
    title, evidence = anomaly(db, "payment_failure_spike")
    assert title == "card_testing title"
    assert evidence["diagnosis"]["classification"] == "card_testing"
    assert evidence["windows_breached"] == 3


SPAN = (SPIKE, SPIKE + timedelta(minutes=5))


class TestFailureStats:
    """The SQL on its own: what it counts, over which events."""

    def test_attempts_are_payments_and_only_the_span_is_read(self, database_url, db):
        inside = SPIKE + timedelta(seconds=30)
        events = [e for i in range(3) for e in streams.declined_payment(inside, f"in{i}")]
        events += streams.succeeded_payment(inside, "ok")
        events += streams.declined_payment(SPIKE - timedelta(seconds=5), "before")
        events += streams.declined_payment(SPAN[1], "after")
        streams.store(database_url, events)

        with psycopg.connect(database_url) as conn:
            stats = failure_stats(conn, *SPAN)
        assert (stats.attempts, stats.failed) == (4, 3)
        assert stats.failure_codes.counts == [("card_declined", 3)]
        assert stats.decline_codes.counts == [("generic_decline", 3)]
        # Three attempts on the fixture's one card: a third of them distinct.
        assert (stats.with_card, stats.distinct_cards) == (3, 1)
        assert (stats.with_customer, stats.distinct_customers) == (0, 0)

    def test_amounts_are_of_the_main_currency(self, database_url, db):
        at = SPIKE + timedelta(seconds=30)
        amounts = [50] * 9 + [100, 5000]
        events = [e for i, a in enumerate(amounts)
                  for e in streams.declined_payment(at, f"a{i}", amount=a,
                                                    currency="eur")]  # fmt: skip
        events += streams.declined_payment(at, "usd", amount=99999, currency="usd")
        streams.store(database_url, events)

        with psycopg.connect(database_url) as conn:
            a = failure_stats(conn, *SPAN).amounts
        assert (a.currency, a.count, a.other_currencies) == ("eur", 11, 1)
        assert (a.min, a.median, a.p90, a.max) == (50, 50, 100, 5000)
        assert (a.most_common, a.most_common_count) == (50, 9)

    def test_the_payment_intent_stands_in_for_a_missing_charge(self, database_url, db):
        at = SPIKE + timedelta(seconds=30)
        intents = [streams.declined_payment(at, f"p{i}", failure_code="processing_error",
                                            decline_code=None)[1] for i in range(4)]  # fmt: skip
        streams.store(database_url, intents)

        with psycopg.connect(database_url) as conn:
            stats = failure_stats(conn, *SPAN)
        assert (stats.attempts, stats.failed) == (4, 4)
        assert stats.failure_codes.counts == [("processing_error", 4)]
        assert stats.decline_codes.counts == [(None, 4)]
        assert stats.with_card == 0 and stats.amounts.median == 1099

    def test_odd_payloads_count_as_unknown_instead_of_failing(self, database_url, db):
        at = SPIKE + timedelta(seconds=30)
        odd = []
        for i, amount in enumerate(["12.50", 1.5, None, {"value": 3}, -5]):
            charge, intent = streams.declined_payment(at, f"odd{i}")
            charge["data"]["object"].update(amount=amount, failure_code=["x"], outcome="none")
            intent["data"]["object"].update(amount=amount, last_payment_error=None)
            odd += [charge, intent]
        broken = streams.declined_payment(at, "broken")[0]
        broken["data"] = {"object": ["not", "an", "object"]}
        streams.store(database_url, [*odd, broken])

        with psycopg.connect(database_url) as conn:
            stats = failure_stats(conn, *SPAN)
        assert (stats.attempts, stats.failed) == (5, 5)  # the broken event is about nothing
        assert stats.decline_codes.counts == [(None, 5)]
        assert stats.amounts.currency is None and stats.amounts.median is None


class TestReasonStats:
    def test_a_charge_refunded_alone_gives_its_refunds_reason(self, database_url, db):
        at = SPIKE + timedelta(seconds=30)
        events = [streams.reasoned_refund(at, f"r{i}", "fraudulent", 700)[0] for i in range(3)]
        events += streams.reasoned_refund(at, "both", "duplicate", 300)  # charge and refund
        events += streams.reasoned_refund(at, "none", None)
        streams.store(database_url, events)

        with psycopg.connect(database_url) as conn:
            stats = reason_stats(conn, METRIC_TYPES["refunds"], *SPAN)
        assert stats.count == 5
        assert stats.reasons.counts == [("fraudulent", 3), ("duplicate", 1), (None, 1)]
        assert (stats.amounts.currency, stats.amounts.max) == ("usd", 700)


# Pure classification: each case says why it exists.
FINDING = Finding.of_account("payment_failure_spike", SPIKE, "high", "Payment failure rate 90%",
                             evidence={"baseline": {}})  # fmt: skip


def stats(failed=100, attempts=110, failure=(("card_declined", 100),), decline=None,
          currency="eur", median=50, most_common=50, most_common_count=90, with_card=100,
          distinct_cards=100) -> FailureStats:  # fmt: skip
    amounts = Amounts(currency, failed, 0, most_common, median, median, median, most_common,
                      most_common_count)  # fmt: skip
    decline = decline if decline is not None else (("generic_decline", failed),)
    return FailureStats(attempts, failed, TopCounts(list(failure)), TopCounts(list(decline)),
                        amounts, with_card, distinct_cards, 0, 0)  # fmt: skip


def normal(**changes) -> FailureStats:
    """Declines of ordinary payments (25.00 EUR) on distinct cards."""
    return stats(**{"median": 2500, "most_common": 2500, "most_common_count": 10, **changes})


SPREAD = (("generic_decline", 30), ("insufficient_funds", 25), ("do_not_honor", 20),
          ("expired_card", 10), ("lost_card", 10), ("stolen_card", 5))  # fmt: skip


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        pytest.param(stats(), "card_testing", id="small amounts on distinct cards"),
        pytest.param(stats(failed=9, attempts=9), "unclassified", id="too few failures"),
        pytest.param(stats(median=200, most_common=200), "card_testing",
                     id="2.00 EUR is still small"),
        pytest.param(stats(median=201, most_common=201), "issuer_declines",
                     id="2.01 EUR is not small"),
        pytest.param(stats(currency="jpy", median=300, most_common=300), "card_testing",
                     id="300 JPY is small"),
        pytest.param(stats(currency="jpy", median=301, most_common=301), "issuer_declines",
                     id="301 JPY is not"),
        pytest.param(stats(distinct_cards=80), "card_testing", id="80% distinct cards suffice"),
        pytest.param(stats(distinct_cards=79), "issuer_declines",
                     id="one card tried over and over is not card testing"),
        pytest.param(stats(with_card=49, distinct_cards=49), "issuer_declines",
                     id="cards known for under half the failures cannot show card testing"),
        pytest.param(normal(failure=(("processing_error", 60), ("card_declined", 40))),
                     "processor_outage", id="one processing code at 60% is an outage"),
        pytest.param(normal(failure=(("processing_error", 59), ("card_declined", 41)),
                            decline=SPREAD), "issuer_declines", id="59% is not"),
        pytest.param(normal(decline=(("issuer_not_available", 70), ("generic_decline", 30))),
                     "processor_outage", id="the issuer's processor unreachable is an outage"),
        pytest.param(normal(decline=SPREAD), "issuer_declines", id="declines spread over codes"),
        pytest.param(normal(decline=(("insufficient_funds", 90), ("generic_decline", 10))),
                     "issuer_declines", id="one issuer decline code dominating"),
        pytest.param(normal(decline=(("highest_risk_level", 90), ("generic_decline", 10))),
                     "unclassified", id="a dominant code that is no issuer decline"),
        pytest.param(normal(failure=((None, 100),), decline=((None, 100),)), "unclassified",
                     id="events without codes"),
        pytest.param(normal(failure=(("card_declined", 100),), decline=((None, 100),)),
                     "issuer_declines", id="the failure code stands in for missing decline codes"),
    ],
)  # fmt: skip
def test_classification(s, expected):
    verdict = diagnosis.classify_failures(s)
    assert verdict.classification == expected, verdict.reason
    assert str(s.failed) in verdict.reason  # a reason says how many failures it rests on


def test_the_classification_thresholds_are_read_from_the_rules_file(tmp_path):
    from sentinelops_pipelines.rules.definitions import default_rules_text, load_rules

    stricter = tmp_path / "rules.toml"
    stricter.write_text(
        default_rules_text().replace("distinct_card_share = 0.8", "distinct_card_share = 0.95")
    )
    rule = load_rules(stricter).rules["payment_failure_spike"]
    s = stats(distinct_cards=90)
    assert diagnosis.classify_failures(s).classification == "card_testing"
    assert diagnosis.classify_failures(s, rule.diagnosis).classification == "issuer_declines"


@pytest.mark.parametrize(
    ("s", "title"),
    [
        pytest.param(stats(), "Card testing suspected: 100 of 110 attempts declined, "
                     "9 in 10 at 0.50 EUR", id="mostly one small amount"),
        pytest.param(stats(most_common_count=100), "Card testing suspected: 100 of 110 attempts"
                     " declined, all at 0.50 EUR", id="every one at one amount"),
        pytest.param(stats(most_common_count=20, median=150), "Card testing suspected: 100 of 110"
                     " attempts declined, median 1.50 EUR", id="varied small amounts"),
        pytest.param(normal(failure=(("processing_error", 96), ("card_declined", 4)),
                            attempts=120), "Processor outage suspected: 96 of 120 attempts failed"
                     " with processing_error", id="outage"),
        pytest.param(normal(decline=SPREAD, attempts=200), "Issuer declines: 100 of 200 attempts"
                     " declined (generic_decline 30, insufficient_funds 25, do_not_honor 20, …)",
                     id="issuer declines list the three most common codes"),
        pytest.param(normal(decline=(("highest_risk_level", 90), ("generic_decline", 10))),
                     FINDING.title, id="unclassified keeps the rule's title"),
    ],
)  # fmt: skip
def test_titles(s, title):
    found = diagnosis.with_failure_diagnosis(FINDING, s)
    assert found.title == title
    assert found.evidence["baseline"] == {} and found.evidence["diagnosis"]["failed"] == s.failed


def test_only_the_top_codes_are_listed_by_name():
    codes = TopCounts([(f"code_{i}", 10 - i) for i in range(8)])
    assert codes.evidence() == {
        "top": [{"code": f"code_{i}", "count": 10 - i} for i in range(5)], "other": 5 + 4 + 3,
    }  # fmt: skip


REFUNDS = Finding.of_account("refund_spike", SPIKE, "medium", "12 refunds in 30 min (usually 0.4)",
                             evidence={})  # fmt: skip


@pytest.mark.parametrize(
    ("reasons", "title"),
    [
        pytest.param([("duplicate", 9), ("fraudulent", 3)],
                     "12 refunds in 30 min (usually 0.4), 9 of them duplicate", id="one dominates"),
        pytest.param([("requested_by_customer", 6), (None, 6)],
                     "12 refunds in 30 min (usually 0.4), 6 of them requested by customer",
                     id="half is enough"),
        pytest.param([("duplicate", 5), ("fraudulent", 4), (None, 3)], REFUNDS.title,
                     id="no main reason"),
        pytest.param([(None, 10), ("duplicate", 2)], REFUNDS.title, id="mostly none given"),
    ],
)  # fmt: skip
def test_refund_titles_gain_their_main_reason(reasons, title):
    s = ReasonStats(12, TopCounts(reasons), Amounts("usd", 12, 0, 100, 100, 100, 100, 100, 12))
    found = diagnosis.with_reason_diagnosis(REFUNDS, s, "refunds")
    assert found.title == title
    assert found.evidence["diagnosis"]["count"] == 12
