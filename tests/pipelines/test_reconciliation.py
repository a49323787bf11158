"""Reconciliation with the real stripe client against a local Events API: missed events are
stored and raised as one gap, re-runs add nothing, failures lose nothing, the key stays secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sentinelops.windows import window_floor
from sentinelops_pipelines.assets.reconciliation import (
    ReconciliationConfig,
    listing_range,
    reconciliation,
)
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.definitions import defs
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import default_rules_text, load_rules
from sentinelops_pipelines.stripe_api import StripeResource
from tests import streams
from tests.stripe_server import KEY, RATE_LIMITED, SERVER_ERROR, EventsAPI
from tests.support import signed_headers

NOW = datetime.now(UTC)
T = window_floor(NOW) - timedelta(hours=3)
RECEIVED = [*streams.succeeded_payment(T + timedelta(minutes=1), "a"),
            *streams.succeeded_payment(T + timedelta(minutes=20), "b")]  # fmt: skip
MISSED = [
    *streams.failed_payment(T + timedelta(minutes=6), "c"),
    *streams.dispute(T + timedelta(minutes=8), "d"),
    *streams.refund(T + timedelta(minutes=31), "e"),
    *streams.cancellation(T + timedelta(minutes=47), "f"),
    *streams.succeeded_payment(T + timedelta(minutes=50), "g"),
]
TOO_OLD = streams.dispute(NOW - timedelta(days=31), "old")  # beyond Stripe's 30 days


@pytest.fixture
def api(database_url):
    """Stripe holds every event; the webhook stored only RECEIVED."""
    streams.store(database_url, RECEIVED)
    return EventsAPI(events=RECEIVED + MISSED + TOO_OLD)


def reconcile(
    url: str, api_url: str, rules: RulesResource | None = None, **stripe: object
) -> dg.ExecuteInProcessResult:
    options = {"api_key": KEY, "api_base": api_url, "page_size": 3, "backoff_seconds": 0.01,
               "max_retry_after_seconds": 0.2, **stripe}  # fmt: skip
    return dg.materialize(
        [stripe_events, reconciliation],
        selection=[reconciliation],
        resources={"postgres": PostgresResource(database_url=url),
                   "rules": rules or RulesResource(),
                   "stripe": StripeResource(**options)},  # type: ignore[arg-type]
        raise_on_error=False,
    )  # fmt: skip


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node("reconciliation")
    return {k: v.value for k, v in materialization.metadata.items()}


def failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return event.step_failure_data.error.to_string()


def stored(db, source: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT id FROM stripe_events WHERE source = %s", (source,))}


def ids(events: list[dict]) -> set[str]:
    return {e["id"] for e in events}


class TestReconciliation:
    def test_missed_events_are_stored_and_raise_one_gap(self, database_url, db, api):
        with api.serve() as url:
            result = reconcile(database_url, url)

        assert result.success
        assert stored(db, "reconciliation") == ids(MISSED)
        assert stored(db, "webhook") == ids(RECEIVED)
        assert db.execute(
            "SELECT DISTINCT deliveries FROM stripe_events WHERE source = 'reconciliation'"
        ).fetchall() == [(0,)]
        (gap,) = db.execute(
            "SELECT id, rule, severity, status, window_start, window_end, title, evidence"
            " FROM anomalies"
        ).fetchall()
        anomaly_id, rule, severity, status, start, end, title, evidence = gap
        assert (rule, severity, status) == ("webhook_gap", "medium", "open")
        assert (start, end) == (T + timedelta(minutes=5), T + timedelta(minutes=55))
        assert title.startswith("7 Stripe events never arrived by webhook")
        assert evidence["missing"] == 7
        assert evidence["missing_by_type"] == {
            "charge.dispute.created": 1, "charge.failed": 1, "charge.refunded": 1,
            "charge.succeeded": 1, "customer.subscription.deleted": 1,
            "payment_intent.payment_failed": 1, "payment_intent.succeeded": 1,
        }  # fmt: skip
        assert set(evidence["sample_event_ids"]) == ids(MISSED)
        assert evidence["first_created"] == (T + timedelta(minutes=6)).isoformat()
        alert = db.execute("SELECT kind, status FROM notifications WHERE anomaly_id = %s",
                           (anomaly_id,)).fetchall()  # fmt: skip
        assert alert == [("opened", "pending")]  # the operator is told on Slack
        unchecked = {"listed_from": None, "listed_until": None}
        assert metadata(result) | unchecked == unchecked | {
            "event_types": "all", "pages": 4, "events_listed": 11, "missing_stored": 7,
            "gap": "7 missing: anomaly opened", "gap_anomaly_id": anomaly_id,
            # The webhook's first delivery was created at T+1: nothing listed is older.
            "history_imported": 0, "history_before": (T + timedelta(minutes=1)).isoformat(),
        }  # fmt: skip
        thirty_days_ago = (datetime.now(UTC) - timedelta(days=30)).timestamp()
        assert abs(int(api.requests[0].query["created[gte]"]) - thirty_days_ago) < 60
        assert [r.query.get("starting_after") for r in api.requests[1:]] == [
            e["id"] for e in sorted(RECEIVED + MISSED, key=lambda e: (e["created"], e["id"]),
                                    reverse=True)[2:9:3]
        ]  # fmt: skip

    def test_an_envelope_field_that_is_no_string_is_stored_as_null_as_the_webhook_does(
        self, database_url, db, client
    ):
        # Stripe sends strings there; anything else must not land as the text of an object or a
        # number, and an event listed must make the same row as the same event delivered.
        at = T + timedelta(minutes=40)
        connect, odd, delivered = (streams.refund(at, n)[0] for n in ("conn", "odd", "hook"))
        connect["account"] = "acct_1Abc"
        for event in (odd, delivered):
            event.update(api_version={"pinned": "2024-06-20"}, account=42)
        body = json.dumps(delivered).encode()
        response = client.post("/api/v1/webhooks/stripe", content=body,
                               headers=signed_headers(body))  # fmt: skip
        assert response.status_code == 200
        with EventsAPI(events=[connect, odd, delivered]).serve() as url:
            assert reconcile(database_url, url).success

        rows = db.execute("SELECT id, source, api_version, account FROM stripe_events").fetchall()
        assert set(rows) == {
            (connect["id"], "reconciliation", connect["api_version"], "acct_1Abc"),
            (odd["id"], "reconciliation", None, None),
            (delivered["id"], "webhook", None, None),
        }

    def test_rate_limits_are_waited_out_and_server_errors_retried(self, database_url, db, api):
        api.fail(RATE_LIMITED, at=[1])
        api.fail(SERVER_ERROR, at=[3])
        with api.serve() as url:
            result = reconcile(database_url, url)

        assert result.success
        assert stored(db, "reconciliation") == ids(MISSED)
        assert [r.status for r in api.requests] == [200, 429, 200, 500, 200, 200]
        gaps = [b.at - a.at for a, b in zip(api.requests, api.requests[1:], strict=False)]
        assert gaps[1] >= 0.2  # Retry-After: 1, capped at max_retry_after_seconds in this test
        # At most 25 requests a second: the client spaces them 40 ms apart. Measured on arrival,
        # so one request delayed in transit on a busy machine shortens the next gap a little.
        paced = gaps[:1] + gaps[2:]
        assert sum(paced) / len(paced) >= 0.035 and min(paced) >= 0.02

    def test_a_second_run_adds_nothing_and_lists_only_since_the_first(self, database_url, db, api):
        with api.serve() as url:
            reconcile(database_url, url)
            before = db.execute("SELECT * FROM anomalies").fetchall()
            first_until = int(api.requests[-1].query["created[lte]"])
            api.requests.clear()
            again = reconcile(database_url, url)

        assert again.success
        assert metadata(again)["missing_stored"] == 0 and metadata(again)["gap"] == "none"
        assert db.execute("SELECT * FROM anomalies").fetchall() == before
        assert int(api.requests[0].query["created[gte]"]) == first_until - 10 * 60

    def test_a_gap_that_continues_into_the_next_run_is_the_same_anomaly(self, database_url, db):
        now = datetime.now(UTC)
        streams.store(database_url, streams.succeeded_payment(now - timedelta(hours=2), "w"))
        api = EventsAPI(events=[*streams.failed_payment(now - timedelta(minutes=40), "h"),
                                *streams.dispute(now - timedelta(minutes=38), "i")])  # fmt: skip
        with api.serve() as url:
            reconcile(database_url, url)
            # Stripe lists these late: inside the overlap the next run lists again.
            api.events += [*streams.refund(now - timedelta(minutes=14), "j"),
                           *streams.cancellation(now - timedelta(minutes=13), "k")]  # fmt: skip
            again = reconcile(database_url, url)

        assert metadata(again)["gap"] == "2 missing: anomaly extended"
        (title, end, evidence), *others = db.execute(
            "SELECT title, window_end, evidence FROM anomalies"
        ).fetchall()
        assert others == []
        assert title.startswith("5 Stripe events never arrived by webhook")
        assert end == window_floor(now - timedelta(minutes=13)) + timedelta(minutes=5)
        assert evidence["missing"] == 5 and evidence["missing_by_type"]["charge.refunded"] == 1

    def test_the_first_run_imports_what_predates_the_webhook_as_history_not_a_gap(
        self, database_url, db
    ):
        now = datetime.now(UTC)
        history = [*streams.failed_payment(now - timedelta(days=20), "old1"),
                   *streams.dispute(now - timedelta(days=3), "old2")]  # fmt: skip
        first_delivery = streams.succeeded_payment(now - timedelta(days=1), "hook")
        missed = streams.refund(now - timedelta(hours=5), "lost")
        api = EventsAPI(events=[*history, *first_delivery, *missed])
        streams.store(database_url, first_delivery)  # the webhook began a day ago

        with api.serve() as url:
            result = reconcile(database_url, url)

        assert result.success
        # Every event is kept; only the one created after the webhook's first delivery is missed.
        assert stored(db, "reconciliation") == ids(history) | ids(missed)
        assert metadata(result)["history_imported"] == len(history)
        assert metadata(result)["missing_stored"] == len(missed)
        (evidence,) = db.execute("SELECT evidence FROM anomalies").fetchone()
        assert evidence["missing"] == len(missed)
        assert set(evidence["sample_event_ids"]) == ids(missed)

    def test_a_first_run_before_any_webhook_arrived_raises_no_gap(self, database_url, db):
        now = datetime.now(UTC)
        history = [*streams.failed_payment(now - timedelta(days=2), "p"),
                   *streams.dispute(now - timedelta(hours=1), "q")]  # fmt: skip
        with EventsAPI(events=history).serve() as url:
            result = reconcile(database_url, url)

        assert result.success and metadata(result)["gap"] == "none"
        assert stored(db, "reconciliation") == ids(history)
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)

    def test_types_the_webhook_endpoint_never_subscribed_to_are_not_missing(
        self, database_url, db, api, tmp_path
    ):
        path = tmp_path / "rules.toml"
        subscribed = '["charge.refunded", "customer.subscription.deleted"]'
        path.write_text(
            default_rules_text().replace("event_types = []", f"event_types = {subscribed}")
        )
        with api.serve() as url:
            result = reconcile(database_url, url, RulesResource(path=str(path)))

        assert metadata(result)["events_listed"] == 2
        assert stored(db, "reconciliation") == ids(MISSED[3:5])
        evidence = db.execute("SELECT evidence FROM anomalies").fetchone()[0]
        assert evidence["missing_by_type"] == {
            "charge.refunded": 1,
            "customer.subscription.deleted": 1,
        }

    def test_a_run_that_dies_half_way_loses_nothing(self, database_url, db, api):
        api.fail(SERVER_ERROR, at=[1, 2, 3])
        with api.serve() as url:
            failed = reconcile(database_url, url, max_retries=2)
            assert not failed.success
            assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM reconciliation_state").fetchone() == (0,)
            api.requests.clear()
            result = reconcile(database_url, url)

        assert "Stripe's Events API answered 500" in failure(failed)
        assert result.success
        # Listed from the start again: the watermark moved only with a complete listing.
        thirty_days_ago = (datetime.now(UTC) - timedelta(days=30)).timestamp()
        assert abs(int(api.requests[0].query["created[gte]"]) - thirty_days_ago) < 60
        assert stored(db, "reconciliation") == ids(MISSED)
        evidence = db.execute("SELECT evidence FROM anomalies").fetchone()[0]
        assert evidence["missing"] == 7  # including the first page the failed run stored

    def test_a_rejected_key_fails_the_run_without_revealing_it(self, database_url, api):
        wrong = "sk_test_not_the_right_key_4242424242"
        with api.serve() as url:
            result = reconcile(database_url, url, api_key=wrong)

        assert not result.success
        assert len(api.requests) == 1  # a 401 is not retried
        assert "answered 401: Invalid API Key provided: Bearer [redacted]" in failure(result)
        assert wrong not in repr(result.all_events)

    def test_without_an_api_key_the_run_skips_and_says_why(self, database_url, db):
        result = reconcile(database_url, "http://127.0.0.1:9", api_key="")

        assert result.success
        assert "STRIPE_API_KEY is not set" in metadata(result)["skipped"]
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)


class TestAfterReconciliation:
    def test_a_later_webhook_for_a_reconciled_event_only_counts_a_delivery(
        self, database_url, db, api, client
    ):
        with api.serve() as url:
            reconcile(database_url, url)
        event = MISSED[0]
        body = json.dumps(event).encode()

        response = client.post("/api/v1/webhooks/stripe", content=body,
                               headers=signed_headers(body))  # fmt: skip

        assert response.status_code == 200
        row = db.execute(
            "SELECT source, deliveries, received_at < last_received_at FROM stripe_events"
            " WHERE id = %s",
            (event["id"],),
        ).fetchone()
        assert row == ("reconciliation", 1, True)


@pytest.mark.parametrize(
    ("watermark", "expected_since"),
    [
        pytest.param(None, NOW - timedelta(days=30), id="first run: Stripe's whole 30 days"),
        pytest.param(NOW - timedelta(hours=1), NOW - timedelta(minutes=70),
                     id="since the watermark, minus the overlap for late-listed events"),
        pytest.param(NOW - timedelta(days=45), NOW - timedelta(days=30),
                     id="never further back than Stripe keeps events"),
    ],
)  # fmt: skip
def test_listing_range(watermark, expected_since):
    since, until = listing_range(NOW, watermark, ReconciliationConfig())
    assert (since, until) == (expected_since, NOW - timedelta(minutes=5))


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        pytest.param(1, "medium", id="one lost event is alerted"),
        pytest.param(24, "medium", id="below the high threshold"),
        pytest.param(25, "high", id="a long outage"),
    ],
)
def test_gap_severity_comes_from_the_rule_definition(missing, expected):
    assert load_rules().rules["webhook_gap"].severity(missing) == expected  # type: ignore[union-attr]


def test_the_hourly_schedule_is_on_by_default():
    schedule = defs.resolve_schedule_def("reconciliation_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "23 * * * *"
