"""Slack alerts through the real slack_sdk WebhookClient against a local server: queued with the
anomaly, posted exactly once across failures, rate limits, kills, concurrent and repeated runs."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.checks import notifications_delivered
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from tests import streams
from tests.local_http import Reply, ScriptedServer
from tests.support import auth, live_rules_file

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
SECRET = "T0SECRET/B0SECRET/XsecretwebhooktokenX"


def finding(severity: str = "high", scope: str = "all", **evidence: object) -> Finding:
    return Finding(
        rule="payment_failure_spike",
        scope=scope,
        severity=severity,  # type: ignore[arg-type]
        title=f"Payment failure rate 60% over 30 min ({severity})",
        window_start=T0,
        evidence={"windows": {"30m": {"attempts": 600, "failed": 360, "rate": 0.6}}, **evidence},
    )


def record(url: str, f: Finding, min_severity: str = "medium") -> str:
    with psycopg.connect(url) as conn:
        return anomaly_sql.record(conn, f, timedelta(minutes=30), min_severity)


def outbox(db) -> list[tuple]:
    return db.execute(
        "SELECT anomaly_id, kind, severity, status, attempts FROM notifications ORDER BY id"
    ).fetchall()


@pytest.fixture
def slack_server():
    with ScriptedServer() as server:
        yield server


def slack(server: ScriptedServer, **policy: float) -> SlackResource:
    return SlackResource(
        webhook_url=f"{server.url}/services/{SECRET}",
        timeout_seconds=policy.pop("timeout_seconds", 0.5),
        retry_backoff_seconds=policy.pop("retry_backoff_seconds", 0),
        **policy,
    )


def run_delivery(url: str, resource: SlackResource, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [slack_notifications],
        resources={"postgres": PostgresResource(database_url=url), "slack": resource},
        instance=instance,
    )


def posted_ids(server: ScriptedServer) -> list[str]:
    return [r.json()["text"].split("Anomaly #")[1].split(" ")[0] for r in server.accepted]


def _deliver_forever(database_url: str, server_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        deliver(
            conn,
            SlackResource(
                webhook_url=server_url, timeout_seconds=30, lease_seconds=60
            ).destination(),
        )


class TestOutbox:
    def test_openings_at_the_minimum_and_every_escalation_are_queued_once(self, database_url, db):
        assert record(database_url, finding("low")) == "opened"
        assert outbox(db) == []  # below the medium minimum
        record(database_url, finding("medium"))
        record(database_url, finding("high"))
        record(database_url, finding("high", scope="eu"))
        for _ in range(2):  # re-evaluating the same windows queues nothing new
            record(database_url, finding("high"))
            record(database_url, finding("high", scope="eu"))
        assert outbox(db) == [
            (1, "escalated", "medium", "pending", 0),
            (1, "escalated", "high", "pending", 0),
            (2, "opened", "high", "pending", 0),
        ]

    def test_the_minimum_severity_is_configurable(self, database_url, db):
        record(database_url, finding("low"), min_severity="low")
        record(database_url, finding("medium", scope="eu"), min_severity="high")
        assert [(r[1], r[2]) for r in outbox(db)] == [("opened", "low")]

    def test_demo_anomalies_are_never_queued(self, database_url, db):
        record(database_url, finding("high", _demo=True))
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (1,)
        assert outbox(db) == []

    def test_the_alert_commits_or_vanishes_with_its_anomaly(self, database_url, db):
        with pytest.raises(RuntimeError), psycopg.connect(database_url) as conn:
            anomaly_sql.record(conn, finding("high"), timedelta(minutes=30))
            raise RuntimeError("the run dies before committing")
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)
        assert outbox(db) == []


class TestDelivery:
    def test_a_spike_reaches_slack_once_with_what_to_do(self, database_url, db, slack_server):
        streams.store(database_url, streams.normal_traffic(T0 - timedelta(hours=1), hours=1))
        streams.store(database_url, streams.failure_spike(T0, minutes=30))
        rules = dg.materialize(
            [stripe_events, window_metrics, anomalies],
            resources={"postgres": PostgresResource(database_url=database_url),
                       "rules": RulesResource(path=live_rules_file()),
                       "slack": slack(slack_server)},
            tags={"dagster/asset_partition_range_start": "2026-03-02-04:45",
                  "dagster/asset_partition_range_end": "2026-03-02-05:25"},
            selection=[window_metrics, anomalies],
        )  # fmt: skip
        assert rules.success
        # Posted by the run that found it, right after its commit: no delivery run needed.
        assert len(slack_server.received) == 1

        for _ in range(3):
            assert run_delivery(database_url, slack(slack_server)).success

        (message,) = slack_server.received
        anomaly_id, title = db.execute("SELECT id, title FROM anomalies").fetchone()
        body = message.json()
        assert f"Anomaly #{anomaly_id}" in body["text"] and title in body["text"]
        blocks = body["blocks"]
        assert blocks[0]["type"] == "header" and "HIGH" in blocks[0]["text"]["text"]
        assert any("payment_failure_spike" in b.get("text", {}).get("text", "") for b in blocks)
        assert any(b["type"] == "section" and b.get("fields") for b in blocks)  # key numbers
        what_to_do = blocks[-1]["elements"][0]["text"]
        assert f"PATCH /api/v1/anomalies/{anomaly_id}" in what_to_do
        assert f"<http://127.0.0.1:8000/console/incidents/{anomaly_id}|" in what_to_do
        assert outbox(db) == [(anomaly_id, "opened", "high", "sent", 1)]

    def test_a_failure_and_a_timeout_then_recovery_deliver_once(
        self, database_url, db, slack_server
    ):
        record(database_url, finding("high"))
        slack_server.script(Reply(500, "internal_error"), Reply(hang=True), Reply(200, "ok"))
        for _ in range(4):
            assert run_delivery(database_url, slack(slack_server, timeout_seconds=0.3)).success

        assert [r.reply.status for r in slack_server.received] == [500, 200, 200]
        assert len(slack_server.accepted) == 1
        assert outbox(db) == [(1, "opened", "high", "sent", 3)]

    def test_backoff_grows_while_slack_keeps_failing(self, database_url, db, slack_server):
        record(database_url, finding("high"))
        slack_server.script(Reply(503, "unavailable"))
        failing = slack(slack_server, retry_backoff_seconds=30)
        run_delivery(database_url, failing)
        run_delivery(database_url, failing)  # not due yet: nothing posted
        assert len(slack_server.received) == 1
        wait, error = db.execute(
            "SELECT extract(epoch FROM next_attempt_at - now()), last_error FROM notifications"
        ).fetchone()
        assert 25 < wait <= 30 and error.startswith("HTTP 503")

    def test_a_429_holds_every_message_until_retry_after(self, database_url, db, slack_server):
        record(database_url, finding("high"))
        record(database_url, finding("high", scope="eu"))
        slack_server.script(Reply(429, "rate_limited", {"Retry-After": "30"}), Reply(200, "ok"))
        run_delivery(database_url, slack(slack_server))
        run_delivery(database_url, slack(slack_server))
        assert len(slack_server.received) == 1  # nothing else tried inside the 30 seconds
        waits = db.execute(
            "SELECT extract(epoch FROM next_attempt_at - now()) FROM notifications"
        ).fetchall()
        assert all(28 < w <= 30 for (w,) in waits)

        db.execute("UPDATE notifications SET next_attempt_at = now()")  # 30 seconds later
        run_delivery(database_url, slack(slack_server))
        assert sorted(posted_ids(slack_server)) == ["1", "2"]
        assert {r[3] for r in outbox(db)} == {"sent"}

    def test_concurrent_runs_never_post_the_same_alert(self, database_url, db, slack_server):
        for n in range(6):
            record(database_url, finding("high", scope=f"s{n}"))
        slack_server.script(Reply(200, "ok", delay=0.05))

        def one_run() -> None:
            with psycopg.connect(database_url, autocommit=True) as conn:
                deliver(conn, slack(slack_server).destination())

        threads = [threading.Thread(target=one_run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(posted_ids(slack_server)) == [str(n) for n in range(1, 7)]

    def test_a_sender_killed_mid_post_is_retried_once_after_its_lease(
        self, database_url, db, slack_server
    ):
        record(database_url, finding("high"))
        slack_server.script(Reply(hang=True), Reply(200, "ok"))
        # A forked child starts in milliseconds (a fresh interpreter spends seconds importing
        # Dagster) and dies by SIGKILL mid-post, exactly like a killed run worker.
        sender = multiprocessing.get_context("fork").Process(
            target=_deliver_forever, args=(database_url, slack_server.url), daemon=True
        )
        sender.start()
        deadline = time.monotonic() + 30
        while not slack_server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        sender.kill()
        sender.join()
        assert len(slack_server.received) == 1 and not slack_server.accepted

        run_delivery(database_url, slack(slack_server))
        assert len(slack_server.received) == 1  # still leased to the dead sender
        db.execute("UPDATE notifications SET next_attempt_at = now()")  # the lease ran out
        run_delivery(database_url, slack(slack_server))
        run_delivery(database_url, slack(slack_server))
        assert len(slack_server.accepted) == 1
        assert outbox(db) == [(1, "opened", "high", "sent", 2)]

    def test_an_acknowledged_anomaly_is_not_posted(self, database_url, db, client, slack_server):
        record(database_url, finding("high"))
        response = client.patch(
            "/api/v1/anomalies/1", json={"status": "acknowledged"}, headers=auth()
        )
        assert response.status_code == 200
        run_delivery(database_url, slack(slack_server))
        assert slack_server.received == []
        assert outbox(db)[0][3] == "skipped"

    def test_without_a_webhook_alerts_are_logged_once_and_kept(self, database_url, db):
        record(database_url, finding("high"))
        instance = dg.DagsterInstance.ephemeral()
        first = run_delivery(database_url, SlackResource(), instance)
        second = run_delivery(database_url, SlackResource(), instance)
        logged = [
            e.user_message
            for run in (first, second)
            for e in instance.all_logs(run.run_id)
            if "stays pending" in e.user_message
        ]
        assert len(logged) == 1 and "Anomaly #1" in logged[0]
        assert outbox(db)[0][3] == "pending"

    def test_the_webhook_url_never_reaches_logs_or_the_database(
        self, database_url, db, slack_server
    ):
        record(database_url, finding("high"))
        slack_server.script(Reply(500, f"echo {SECRET}"), Reply(hang=True), Reply(200, "ok"))
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append  # type: ignore[method-assign]
        root = logging.getLogger()
        level, root.level = root.level, logging.DEBUG
        root.addHandler(handler)
        instance = dg.DagsterInstance.ephemeral()
        try:
            runs = [
                run_delivery(database_url, slack(slack_server, timeout_seconds=0.3), instance)
                for _ in range(3)
            ]
        finally:
            root.removeHandler(handler)
            root.level = level
        assert len(slack_server.accepted) == 1
        texts = [r.getMessage() for r in records]
        texts += [e.user_message for run in runs for e in instance.all_logs(run.run_id)]
        texts += [str(row) for row in db.execute("SELECT * FROM notifications").fetchall()]
        assert not [t for t in texts if "secretwebhooktoken" in t]


def run_with_check(url: str, resource: SlackResource) -> dg.ExecuteInProcessResult:
    """A delivery run as alerts_job runs it: the asset, then its check."""
    return dg.materialize(
        [slack_notifications, notifications_delivered],
        resources={"postgres": PostgresResource(database_url=url), "slack": resource},
    )


def check_of(run: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = run.get_asset_check_evaluations()
    return evaluation


class TestPermanentFailures:
    def test_a_revoked_webhook_is_tried_once_then_held_until_the_setting_changes(
        self, database_url, db, slack_server, client
    ):
        record(database_url, finding("high"))
        record(database_url, finding("high", scope="eu"))
        slack_server.script(Reply(404, "no_service"))
        first = run_with_check(database_url, slack(slack_server))
        assert first.success  # the run did its job; the check is what turns red
        assert len(slack_server.received) == 1  # the rest would be refused the same way
        assert [r[3] for r in outbox(db)] == ["failed", "pending"]
        failure = db.execute(
            "SELECT last_error, failed_at IS NOT NULL, target_fingerprint FROM notifications"
            " WHERE status = 'failed'"
        ).fetchone()
        assert failure[:2] == ("HTTP 404: no_service", True)
        assert "secret" not in failure[2].lower()
        metadata = first.asset_materializations_for_node("slack_notifications")[0].metadata
        assert (metadata["failed"].value, metadata["failed_total"].value) == (1, 1)
        check = check_of(first)
        assert not check.passed and check.metadata["failed"].value == 1
        assert check.metadata["newest_error"].value == "HTTP 404: no_service"
        assert "SLACK_WEBHOOK_URL" in (check.description or "")
        health = client.get("/api/v1/health").json()
        assert (health["status"], health["notifications_failed"]) == ("degraded", 1)
        assert health["notifications_pending"] == 1
        assert "SLACK_WEBHOOK_URL" in " ".join(health["reasons"])
        assert 'sentinelops_notifications{status="failed"} 1.0' in client.get("/metrics").text

        db.execute("UPDATE notifications SET next_attempt_at = now()")  # any backoff is over
        second = run_with_check(database_url, slack(slack_server))
        assert len(slack_server.received) == 1  # nothing more posted to a webhook known gone
        assert not check_of(second).passed

        with ScriptedServer(Reply(200, "ok")) as fixed:  # the operator set a new webhook
            third = run_with_check(database_url, slack(fixed))
            run_with_check(database_url, slack(fixed))
        assert sorted(posted_ids(fixed)) == ["1", "2"]  # each once, the failed one included
        assert [r[3] for r in outbox(db)] == ["sent", "sent"]
        assert check_of(third).passed
        assert client.get("/api/v1/health").json()["status"] == "ok"

    def test_a_message_slack_rejects_fails_alone_and_delivery_goes_on(
        self, database_url, db, slack_server
    ):
        record(database_url, finding("high"))
        record(database_url, finding("high", scope="eu"))
        slack_server.script(Reply(400, "invalid_payload"), Reply(200, "ok"))
        run_with_check(database_url, slack(slack_server))
        assert [r[3] for r in outbox(db)] == ["failed", "sent"]

        record(database_url, finding("high", scope="gbp"))
        run = run_with_check(database_url, slack(slack_server))
        assert [r.reply.status for r in slack_server.received] == [400, 200, 200]  # no retry
        assert posted_ids(slack_server) == ["2", "3"]
        check = check_of(run)
        assert not check.passed and check.metadata["newest_error"].value.startswith("HTTP 400")
