"""Slack and OpenAI down for a day, then back: the alerts and the daily summary go out once.

Everything is the production path: the rule assets open the anomalies and queue their alerts, the
`daily_summary` asset builds, stores and queues day 1's summary, the outbox delivery posts
through slack_sdk and the summary writer asks through the openai client, both at local
servers. The day is simulated: each delivery pass moves every pending `next_attempt_at` five
minutes closer (the time between passes) instead of sleeping through the backoff.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg

from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.reporting import daily_summary
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import summaries as summary_sql
from sentinelops_pipelines.summary import template
from sentinelops_pipelines.summary.numbers import unknown_numbers
from sentinelops_pipelines.summary.writers import OpenAISummary
from tests import streams
from tests.local_http import Reply, ScriptedServer
from tests.pipelines.test_daily_summary import completion, error, stored
from tests.pipelines.test_rule_assets import run_range

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
T1, T2 = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (DAY1, DAY2))
PASS_SECONDS = 300  # the delivery runs every five minutes
PASSES_PER_DAY = 24 * 3600 // PASS_SECONDS
AI_CALLS_PER_RUN = 3  # one ask and at most two retries, whatever the outage


def slack_resource(server: ScriptedServer) -> SlackResource:
    # Production backoff (doubling, capped at an hour); only the timeout is shortened.
    return SlackResource(
        webhook_url=f"{server.url}/services/T0/B0/outage", timeout_seconds=0.3,
        retry_backoff_seconds=60, max_backoff_seconds=3600,
    )  # fmt: skip


def ai_writer(server: ScriptedServer) -> OpenAISummary:
    return OpenAISummary(api_key="sk-test-key", base_url=f"{server.url}/v1", model="gpt-test",
                         timeout_seconds=0.3, retry_backoff_seconds=0.01)  # fmt: skip


def summarise(
    url: str, day: date, ai: ScriptedServer, slack: ScriptedServer
) -> dg.MaterializeResult:
    """The daily summary asset for one day, as the schedule runs it."""
    result = dg.materialize(
        [daily_summary],
        partition_key=day.isoformat(),
        resources={"postgres": PostgresResource(database_url=url),
                   "summary_writer": ai_writer(ai), "slack": slack_resource(slack)},
    )  # fmt: skip
    assert result.success
    return result


def delivery_passes(url: str, slack: ScriptedServer, passes: int) -> None:
    """`passes` scheduled deliveries, five simulated minutes apart."""
    resource = slack_resource(slack)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(passes):
            deliver(conn, resource.destination())
            conn.execute(
                "UPDATE notifications SET next_attempt_at = next_attempt_at"
                " - make_interval(secs => %s) WHERE status = 'pending'",
                (PASS_SECONDS,),
            )


def outbox(db: psycopg.Connection) -> list[dict]:
    cur = db.execute(
        "SELECT id, kind, anomaly_id, summary_date, status, attempts, last_error, sent_at"
        " FROM notifications ORDER BY id"
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def summary_row(db: psycopg.Connection, day: date) -> dict:
    """Every column, updated_at included: equal only if nothing rewrote the row."""
    cur = db.execute("SELECT * FROM daily_summaries WHERE date = %s", (day,))
    return dict(zip([c.name for c in cur.description or []], cur.fetchone() or (), strict=True))


def texts(received: list) -> list[str]:
    return [r.json()["text"] for r in received]


def summary_posts(received: list, day: date) -> list[str]:
    return [t for t in texts(received) if t.startswith(f"SentinelOps daily summary, {day}")]


def ai_answer(facts: dict) -> Reply:
    """A wording that uses only numbers of `facts`, so the fact check lets it through."""
    payments, rate = facts["metrics"]["payments"]["day"], facts["metrics"]["failure_rate_pct"]
    return Reply(200, completion(json.dumps({
        "overall": f"Calm on {facts['date']}: {payments:,} payments, {rate['day']}% declined.",
        "highlights": [f"Anomalies still open at the end of the day: "
                       f"{facts['anomalies']['still_open']['total']}."],
        "watch": ["The failure-rate anomaly is still open."],
    })))  # fmt: skip


def test_alerts_and_the_summary_go_out_once_after_a_day_without_slack_and_openai(database_url, db):
    # Day 1: two hours of ordinary payments, a 30-minute failure spike from 01:00 and a burst
    # of refunds at 01:45: two incidents, each worth a Slack alert.
    burst = T1 + timedelta(hours=1, minutes=45)
    day1_events = [
        *streams.normal_traffic(T1, hours=2),
        *streams.failure_spike(T1 + timedelta(hours=1), minutes=30),
        *(e for n in range(10) for e in streams.refund(burst + timedelta(seconds=20 * n), f"{n}")),
    ]
    streams.store(database_url, day1_events)
    assert run_range(database_url, T1, T1 + timedelta(hours=1, minutes=55)).success
    alerts = [n for n in outbox(db) if n["anomaly_id"] is not None]
    assert {n["kind"] for n in alerts} == {"opened"} and len(alerts) >= 2, alerts

    outage_ai = (
        error(500, "server_error", "server_error"),
        error(503, "server_error", "server_error"),
        Reply(hang=True),  # then every call times out
    )
    outage_slack = (Reply(500, "internal_error"), Reply(hang=True), Reply(503, "unavailable"),
                    Reply(500, "internal_error"))  # fmt: skip
    with ScriptedServer(*outage_ai) as ai, ScriptedServer(*outage_slack) as slack:
        # --- 1. A day of outage: the summary of day 1 is built at 00:10 and re-run later.
        delivery_passes(database_url, slack, 2)
        summarise(database_url, DAY1, ai, slack)
        delivery_passes(database_url, slack, PASSES_PER_DAY // 2)
        summarise(database_url, DAY1, ai, slack)  # a retried run, still without AI or Slack
        delivery_passes(database_url, slack, PASSES_PER_DAY // 2)

        s1 = stored(db, DAY1)
        # The AI failure is recorded, never the cause of a lost summary.
        assert (s1["used_ai"], s1["ai_error"], s1["delivered_at"]) == (False, "ai_timeout", None)
        assert len(ai.received) == 2 * AI_CALLS_PER_RUN  # bounded retries, no hammering
        with psycopg.connect(database_url) as conn:
            facts = summary_sql.load_facts(conn, DAY1)
        assert s1["facts"] == facts
        assert s1["text"] == template.render_text(DAY1.isoformat(), template.compose(facts))
        # The numbers are the database's, and those are the events sent.
        day = {"since": T1, "until": T2}
        attempts, failed, refunds = db.execute(
            "SELECT sum(payment_attempts), sum(payments_failed), sum(refunds) FROM window_metrics"
            " WHERE window_start >= %(since)s AND window_start < %(until)s", day
        ).fetchone()  # fmt: skip
        intents = [e for e in day1_events if e["type"].startswith("payment_intent.")]
        assert attempts == len(intents)
        assert failed == sum(e["type"] == "payment_intent.payment_failed" for e in intents)
        assert refunds == sum(e["type"] == "charge.refunded" for e in day1_events)
        opened = db.execute(
            "SELECT count(*) FROM anomalies WHERE window_start >= %(since)s"
            " AND window_start < %(until)s", day
        ).fetchone()[0]  # fmt: skip
        m = s1["facts"]["metrics"]
        assert (m["payments"]["day"], m["payments_failed"]["day"], m["refunds"]["day"]) == (
            attempts, failed, refunds)  # fmt: skip
        assert s1["facts"]["anomalies"]["opened"]["total"] == opened >= 1
        rate = m["failure_rate_pct"]["day"]
        assert f"{attempts:,} payments on {DAY1}, {rate:.1f}% failed" in s1["text"]
        assert unknown_numbers(s1["text"], s1["facts"]) == []

        # Nothing lost: every notification was tried again and again, none given up or sent.
        rows = outbox(db)
        assert [n["kind"] for n in rows].count("daily_summary") == 1
        assert {n["status"] for n in rows} == {"pending"}
        assert all(n["attempts"] >= 10 and n["last_error"] for n in rows), rows
        assert slack.accepted == [] and summary_posts(slack.received, DAY1)
        tried_while_down = len(slack.received)

        # --- 2. Both come back: within the capped backoff, each goes out once.
        slack.script(Reply(200, "ok"))
        delivery_passes(database_url, slack, 3600 // PASS_SECONDS + 1)
        assert {n["status"] for n in outbox(db)} == {"sent"}
        delivery_passes(database_url, slack, 24)  # the schedule keeps running
        assert dg.materialize(
            [slack_notifications],
            resources={"postgres": PostgresResource(database_url=database_url),
                       "slack": slack_resource(slack)},
        ).success  # fmt: skip

        posted = slack.received[tried_while_down:]
        assert all(r.accepted for r in posted)
        assert len(posted) == len(rows)  # one post per notification, none twice
        assert max(Counter(texts(posted)).values()) == 1
        assert summary_posts(posted, DAY1) == [s1["text"]]  # the deterministic one, as stored
        assert stored(db, DAY1)["delivered_at"] is not None
        shipped_day1 = summary_row(db, DAY1)

        # --- 3. Day 2, OpenAI back: worded by the AI and posted once, day 1 left alone.
        streams.store(database_url, streams.normal_traffic(T2, hours=2))
        assert run_range(database_url, T2, T2 + timedelta(hours=1, minutes=55)).success
        with psycopg.connect(database_url) as conn:
            facts2 = summary_sql.load_facts(conn, DAY2)
        ai.script(ai_answer(facts2))
        asked_while_down = len(ai.received)
        summarise(database_url, DAY2, ai, slack)

        s2 = stored(db, DAY2)
        assert (s2["used_ai"], s2["ai_error"], s2["model"]) == (True, None, "gpt-test")
        (request,) = ai.received[asked_while_down:]
        user = [m for m in request.json()["messages"] if m["role"] == "user"]
        assert [json.loads(m["content"]) for m in user] == [s2["facts"]]
        assert summary_posts(slack.accepted, DAY2) == [s2["text"]]
        assert s2["delivered_at"] is not None
        assert summary_row(db, DAY1) == shipped_day1  # not rewritten by day 2's run

        # Re-running day 1 now that the AI answers: its facts are unchanged and it was posted,
        # so it keeps the wording Slack showed (the API must not tell another story), the AI
        # is not asked, and Slack hears nothing.
        ai.script(ai_answer(facts))
        asked_before_rerun = len(ai.received)
        summarise(database_url, DAY1, ai, slack)
        delivery_passes(database_url, slack, 3)
        assert len(ai.received) == asked_before_rerun
        kept = stored(db, DAY1)
        assert (kept["used_ai"], kept["ai_error"], kept["facts"]) == (False, "ai_timeout", facts)
        assert kept["text"] == s1["text"]
        assert kept["delivered_at"] == shipped_day1["delivered_at"]

    # The user-visible guarantee, over the whole scenario: each message in Slack exactly once.
    accepted = texts(slack.accepted)
    assert len(summary_posts(slack.accepted, DAY1)) == 1
    assert len(summary_posts(slack.accepted, DAY2)) == 1
    assert len(accepted) == len(rows) + 1 and max(Counter(accepted).values()) == 1
    assert {n["status"] for n in outbox(db)} == {"sent"}
