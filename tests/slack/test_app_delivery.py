"""The Slack app mode through the real WebClient against a local fake of the Web API
(tests/slack_api.py), on real PostgreSQL: one message per incident kept up to date, one reply
per change in its thread, exactly once across lost answers, refusals and concurrent senders."""

from __future__ import annotations

import dataclasses
import threading
from datetime import date

import psycopg
import pytest

from sentinelops.slack import app as app_module
from sentinelops.slack import outbox
from sentinelops.slack.actions import ACTIONS_BLOCK
from sentinelops.slack.app import SlackApp
from sentinelops.slack.delivery import MAX_ATTEMPTS, deliver
from sentinelops_pipelines.slack import SlackResource
from tests.pipelines.test_alerts import finding, record
from tests.slack_api import FakeSlack, Fault
from webhook_service.anomalies.repository import ADD_HISTORY, SET_STATUS

TOKEN = "xoxb-0000-secret-bot-token"
BUTTONS = {"open": ["Acknowledge", "Resolve"], "acknowledged": ["Resolve"], "resolved": ["Reopen"]}


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def app(fake: FakeSlack, **overrides: object) -> SlackApp:
    config: dict = {"buttons": True, "retry_backoff_seconds": 0, "timeout_seconds": 0.5}
    config.update(overrides)
    resource = SlackResource(bot_token=TOKEN, channel_id=fake.channel, api_url=fake.url, **config)
    destination = resource.destination()
    assert isinstance(destination, SlackApp)
    return destination


def run(database_url: str, fake: FakeSlack, times: int = 1) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(times):
            deliver(conn, app(fake))


def change(database_url: str, anomaly_id: int, to: str, actor: str, note: str | None = None):
    """As the API does it: the status, its history row and the queued Slack update, together."""
    with psycopg.connect(database_url) as conn:
        (current,) = conn.execute(
            "SELECT status FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,)
        ).fetchone()
        conn.execute(SET_STATUS, {"id": anomaly_id, "to": to})
        params = {"id": anomaly_id, "from": current, "to": to, "actor": actor, "note": note}
        (history_id,) = conn.execute(ADD_HISTORY, params).fetchone()
        conn.execute(outbox.ENQUEUE_CHANGE, {"history_id": history_id})


def statuses(db) -> list[tuple]:
    return db.execute("SELECT kind, status FROM notifications ORDER BY id").fetchall()


def header(message: dict) -> str:
    return message["blocks"][0]["text"]["text"]


def buttons(message: dict) -> list[str]:
    actions = [b for b in message["blocks"] if b.get("block_id") == ACTIONS_BLOCK]
    return [e["text"]["text"] for a in actions for e in a["elements"]]


def strings(value: object) -> list[str]:
    """Every string in a message (text, blocks, fields, buttons)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_an_incident_is_one_message_kept_current_with_a_reply_per_change(database_url, db, slack):
    record(database_url, finding("high"))
    run(database_url, slack, times=2)
    (message,) = slack.top_level()
    assert header(message) == ":red_circle: #1 HIGH · open"
    assert buttons(message) == BUTTONS["open"]
    assert message["metadata"]["event_payload"] == {
        "anomaly_id": 1, "notification_id": 1, "change": "opened"}  # fmt: skip

    steps = [
        ("acknowledged", "slack:U0ALICE", "on it", ":white_check_mark: Acknowledged by <@U0ALICE>"),
        ("resolved", "api:bob", None, ":heavy_check_mark: Resolved by api:bob"),
        ("open", "console:local", "again", ":leftwards_arrow_with_hook: Reopened by console:local"),
    ]  # fmt: skip
    for n, (to, actor, note, told) in enumerate(steps, start=1):
        change(database_url, 1, to, actor, note)
        run(database_url, slack, times=2)
        (message,) = slack.top_level()
        assert header(message) == f":red_circle: #1 HIGH · {to}"
        assert buttons(message) == BUTTONS[to]
        replies = slack.thread(message["ts"])
        assert len(replies) == n
        assert replies[-1]["text"].startswith(told)
        assert replies[-1]["reply_broadcast"] == (to == "open")
        assert (f"“{note}”" in replies[-1]["text"]) == bool(note)
    assert "by console:local" in message["blocks"][-2]["elements"][0]["text"]  # who last
    assert {s for _, s in statuses(db)} == {"sent"}


def test_an_escalation_updates_the_message_and_is_broadcast_in_its_thread(database_url, db, slack):
    record(database_url, finding("medium"))
    run(database_url, slack)
    record(database_url, finding("high"))
    run(database_url, slack, times=2)
    (message,) = slack.top_level()
    assert header(message).startswith(":red_circle: #1 HIGH · open") and message["edited"] == 1
    (reply,) = slack.thread(message["ts"])
    assert reply["text"].startswith(":arrow_up: Escalated to *HIGH*") and reply["reply_broadcast"]
    assert statuses(db) == [("opened", "sent"), ("escalated", "sent")]


def test_without_buttons_the_message_names_the_api_call(database_url, slack):
    record(database_url, finding("high"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        deliver(conn, app(slack, buttons=False))
    (message,) = slack.top_level()
    assert buttons(message) == []
    assert "PATCH /api/v1/anomalies/1" in message["blocks"][-1]["elements"][0]["text"]


def test_a_lost_answer_to_the_first_post_is_found_not_posted_again(database_url, db, slack):
    record(database_url, finding("high"))
    slack.lose_answer("chat.postMessage")
    run(database_url, slack)  # Slack posted it; the client timed out
    assert db.execute("SELECT last_error FROM notifications").fetchone() == (
        "Slack API: TimeoutError",
    )
    run(database_url, slack, times=2)
    (message,) = slack.top_level()
    assert len(slack.calls("chat.postMessage")) == 1
    assert len(slack.calls("conversations.history")) == 1
    assert outbox.message_ts(db, 1, slack.channel) == message["ts"]
    assert statuses(db) == [("opened", "sent")]


def test_a_lost_answer_to_a_thread_reply_is_found_not_posted_again(database_url, db, slack):
    record(database_url, finding("high"))
    run(database_url, slack)
    change(database_url, 1, "acknowledged", "slack:U0ALICE")
    slack.lose_answer("chat.postMessage")
    run(database_url, slack)
    run(database_url, slack, times=2)
    (message,) = slack.top_level()
    (reply,) = slack.thread(message["ts"])
    assert len(slack.calls("conversations.replies")) == 1
    assert db.execute("SELECT reply_ts FROM notifications WHERE id = 2").fetchone() == (
        reply["ts"],
    )
    assert statuses(db) == [("opened", "sent"), ("acknowledged", "sent")]


def test_concurrent_senders_post_one_message_and_one_reply_per_change(database_url, db, slack):
    for n in range(4):
        record(database_url, finding("medium", scope=f"s{n}"))
        record(database_url, finding("high", scope=f"s{n}"))
    slack.latency = 0.05  # each call takes a while: the two senders overlap

    def both() -> None:
        senders = [threading.Thread(target=run, args=(database_url, slack)) for _ in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()

    both()
    both()  # whatever the first pass left due (an anomaly's rows go out in order)
    for n in range(1, 5):
        change(database_url, n, "acknowledged", f"api:op{n}")
    both()
    both()
    messages = slack.top_level()
    assert sorted(m["metadata"]["event_payload"]["anomaly_id"] for m in messages) == [1, 2, 3, 4]
    for message in messages:
        kinds = [r["metadata"]["event_payload"]["change"] for r in slack.thread(message["ts"])]
        assert kinds == ["escalated", "acknowledged"]
        assert buttons(message) == BUTTONS["acknowledged"]
    assert {s for _, s in statuses(db)} == {"sent"}


# The permanent codes, and one the app needs its scopes for: each about the app or
# its channel, so every other row would meet it too.
@pytest.mark.parametrize(
    "code",
    ["channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked",
     "missing_scope"],
)  # fmt: skip
def test_a_refused_app_fails_the_row_and_holds_the_rest(database_url, db, slack, code):
    record(database_url, finding("high"))
    record(database_url, finding("high", scope="eu"))
    slack.fail("chat.postMessage", code, times=None)
    run(database_url, slack, times=3)
    assert len(slack.calls("chat.postMessage")) == 1  # held after the refusal
    assert slack.top_level() == []
    rows = db.execute("SELECT status, last_error FROM notifications ORDER BY id").fetchall()
    assert rows == [("failed", f"Slack API: {code}"), ("pending", None)]


def test_a_rate_limit_defers_everything_for_retry_after(database_url, db, slack):
    record(database_url, finding("high"))
    record(database_url, finding("high", scope="eu"))
    slack.fail("chat.postMessage", "ratelimited")
    run(database_url, slack, times=2)
    assert len(slack.calls("chat.postMessage")) == 1
    rows = db.execute(
        "SELECT status, last_error, extract(epoch FROM next_attempt_at - now())"
        " FROM notifications ORDER BY id"
    ).fetchall()
    assert [r[:2] for r in rows] == [("pending", "Slack API: ratelimited"), ("pending", None)]
    assert all(28 < wait <= 30 for *_, wait in rows)


def test_slack_failing_is_retried_and_a_bad_message_fails_alone(database_url, db, slack):
    record(database_url, finding("high"))
    record(database_url, finding("high", scope="eu"))
    slack.fail("chat.postMessage", "invalid_blocks")
    run(database_url, slack)  # the first fails for good, the second goes out
    slack.fail("chat.update", Fault(status=500))
    change(database_url, 2, "acknowledged", "api:alice")
    run(database_url, slack)
    assert db.execute("SELECT last_error FROM notifications WHERE id = 3").fetchone() == (
        "Slack API: HTTP 500",
    )
    run(database_url, slack)
    assert statuses(db) == [("opened", "failed"), ("opened", "sent"), ("acknowledged", "sent")]
    assert len(slack.top_level()) == 1


@pytest.mark.parametrize("lost", [False, True], ids=["answered", "fresh-post-answer-lost"])
def test_a_message_deleted_in_slack_is_posted_afresh_on_the_next_change(
    database_url, db, slack, lost
):
    record(database_url, finding("high"))
    run(database_url, slack)
    (old,) = slack.top_level()
    slack.delete(old["ts"])
    change(database_url, 1, "acknowledged", "slack:U0ALICE")
    if lost:
        slack.lose_answer("chat.postMessage")
    run(database_url, slack, times=2)
    (fresh,) = slack.top_level()
    assert fresh["ts"] != old["ts"] and header(fresh).endswith("· acknowledged")
    (reply,) = slack.thread(fresh["ts"])
    assert reply["text"].startswith(":white_check_mark: Acknowledged by <@U0ALICE>")
    assert outbox.message_ts(db, 1, slack.channel) == fresh["ts"]


def test_data_is_escaped_everywhere_it_is_shown(database_url, slack):
    title = "<!channel> & <b>"
    record(database_url, dataclasses.replace(finding("high", note="<!here>"), title=title))
    run(database_url, slack)
    change(database_url, 1, "acknowledged", "api:<!channel>", note="<!everyone> & co")
    change(database_url, 1, "resolved", "slack:<!channel>")
    run(database_url, slack, times=2)
    (message,) = slack.top_level()
    shown = [message["text"], *strings(message["blocks"])]
    shown += [r["text"] for r in slack.thread(message["ts"])]
    assert not [s for s in shown if "<!" in s or "<b>" in s]
    assert "&lt;!channel&gt; &amp; &lt;b&gt;" in message["text"]
    assert any("&lt;!here&gt;" in s for s in shown)  # the evidence too
    assert any("&lt;!everyone&gt; &amp; co" in s for s in shown)  # the note


def test_acknowledged_before_its_first_post_posts_nothing(database_url, db, slack):
    record(database_url, finding("high"))
    change(database_url, 1, "acknowledged", "api:alice")
    run(database_url, slack)
    assert slack.received == []
    assert statuses(db) == [("opened", "skipped"), ("acknowledged", "skipped")]


def test_the_daily_summary_is_posted_once_despite_a_lost_answer(database_url, db, slack):
    day = date(2026, 3, 2)
    db.execute(
        "INSERT INTO daily_summaries (date, facts, overall, highlights, watch, text)"
        " VALUES (%s, '{}', 'Quiet day.', '[]', '[]', 'Quiet day.')",
        (day,),
    )
    outbox.enqueue_summary(db, day)
    slack.lose_answer("chat.postMessage")
    run(database_url, slack, times=3)
    (message,) = slack.top_level()
    assert message["text"] == "Quiet day."
    # No anomaly: no null in the metadata (Slack refuses it with invalid_metadata_format).
    assert message["metadata"]["event_payload"] == {"notification_id": 1, "change": "daily_summary"}
    assert len(slack.calls("chat.postMessage")) == 1
    assert db.execute("SELECT delivered_at IS NOT NULL FROM daily_summaries").fetchone() == (True,)


def test_a_failed_run_notice_is_one_post_and_errors_keep_the_token_out(slack):
    assert app(slack).post("Pipeline run failed").accepted
    slack.fail("chat.postMessage", "token_revoked")
    result = app(slack).post("again")
    assert (result.error, result.refused) == ("Slack API: token_revoked", True)
    slack.lose_answer("chat.postMessage")
    result = app(slack).post("late")
    assert result.transient and TOKEN not in str(result)


def test_a_refusal_fixed_in_slack_is_probed_again_after_a_cool_off(database_url, db, slack):
    for scope in ("all", "eu", "us"):
        record(database_url, finding("high", scope=scope))
    slack.fail("chat.postMessage", "not_in_channel", times=None)
    run(database_url, slack)
    assert [s for _, s in statuses(db)] == ["failed", "pending", "pending"]

    def cool_off_passes() -> None:
        db.execute(
            "UPDATE notifications SET failed_at = failed_at - make_interval(secs => %s)"
            " WHERE status = 'failed'",
            (app(slack).policy.refused_probe_seconds + 1,),
        )

    cool_off_passes()
    run(database_url, slack, times=2)  # still refused: one probe, then held again
    assert len(slack.calls("chat.postMessage")) == 2
    assert outbox.failed_count(db) == 1 and outbox.pending_count(db) == 2

    slack.heal()  # someone invites the bot
    run(database_url, slack)  # within the cool-off: still held
    assert len(slack.calls("chat.postMessage")) == 2 and slack.top_level() == []
    assert outbox.failed_count(db) == 1

    cool_off_passes()
    run(database_url, slack)
    assert len(slack.top_level()) == 3
    assert {s for _, s in statuses(db)} == {"sent"}
    assert outbox.failed_count(db) == 0


def test_an_error_about_one_message_fails_only_its_row(database_url, db, slack):
    record(database_url, finding("high"))
    record(database_url, finding("high", scope="eu"))
    slack.fail("chat.postMessage", "cannot_reply_to_message")
    run(database_url, slack)
    rows = db.execute("SELECT status, last_error FROM notifications ORDER BY id").fetchall()
    assert rows == [("failed", "Slack API: cannot_reply_to_message"), ("sent", None)]
    run(database_url, slack)  # failed for good, and it holds nothing
    assert len(slack.calls("chat.postMessage")) == 2 and len(slack.top_level()) == 1


def test_an_unknown_error_code_fails_its_row_and_ends_the_pass(database_url, db, slack):
    # Not known to be about one message: were it about the channel, failing every row of the
    # backlog in one pass would lose them all; one row per pass is the most it costs.
    for scope in ("all", "eu", "us"):
        record(database_url, finding("high", scope=scope))
    slack.fail("chat.postMessage", "some_new_restriction", times=None)
    run(database_url, slack)
    assert [s for _, s in statuses(db)] == ["failed", "pending", "pending"]
    slack.heal()
    run(database_url, slack)
    assert [s for _, s in statuses(db)] == ["failed", "sent", "sent"]


# The codes Slack documents as temporary trouble on its side.
@pytest.mark.parametrize(
    "code", ["internal_error", "fatal_error", "service_unavailable", "request_timeout"]
)
def test_a_temporary_error_code_is_retried(database_url, db, slack, code):
    record(database_url, finding("high"))
    slack.fail("chat.postMessage", code)
    run(database_url, slack)
    assert db.execute("SELECT status, last_error FROM notifications").fetchone() == (
        "pending",
        f"Slack API: {code}",
    )
    run(database_url, slack)
    assert statuses(db) == [("opened", "sent")] and len(slack.top_level()) == 1


def test_a_row_that_cannot_be_built_is_retried_then_fails_and_the_rest_goes_out(
    database_url, db, slack, monkeypatch, caplog
):
    record(database_url, finding("high"))
    record(database_url, finding("high", scope="eu"))
    built = app_module.incident_message

    def broken(anomaly: dict, **kwargs: object):
        if anomaly["id"] == 1:
            raise ValueError("evidence has no windows")
        return built(anomaly, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "incident_message", broken)
    with psycopg.connect(database_url, autocommit=True) as conn:
        deliver(conn, app(slack, retry_backoff_seconds=30))
    rows = db.execute(
        "SELECT status, attempts, last_error FROM notifications ORDER BY id"
    ).fetchall()
    assert rows == [("pending", 1, "ValueError: evidence has no windows"), ("sent", 1, None)]
    (wait,) = db.execute(
        "SELECT extract(epoch FROM next_attempt_at - now()) FROM notifications WHERE id = 1"
    ).fetchone()
    assert 20 < wait <= 30  # retried later, with backoff
    assert "ValueError: evidence has no windows" in caplog.text

    db.execute(
        "UPDATE notifications SET attempts = %s, next_attempt_at = now() WHERE id = 1",
        (MAX_ATTEMPTS - 1,),
    )
    run(database_url, slack)
    assert db.execute("SELECT status, attempts FROM notifications WHERE id = 1").fetchone() == (
        "failed",
        MAX_ATTEMPTS,
    )
    assert len(slack.top_level()) == 1  # only the second; nothing was posted for the first
    run(database_url, slack)  # failed for good: not tried again, and nothing is held
    assert db.execute("SELECT attempts FROM notifications WHERE id = 1").fetchone() == (
        MAX_ATTEMPTS,
    )


def test_a_sender_whose_lease_ran_out_cannot_mark_a_newer_claim_sent(database_url, db, slack):
    record(database_url, finding("high"))
    late = app(slack)
    with psycopg.connect(database_url, autocommit=True) as conn:
        first = outbox.with_details(conn, outbox.claim_next(conn, 120), slack.channel)
        assert late.send(conn, first).accepted  # posted, not yet marked
        conn.execute("UPDATE notifications SET next_attempt_at = now()")  # its lease runs out
        second = outbox.with_details(conn, outbox.claim_next(conn, 120), slack.channel)
        assert second["attempts"] == 2
        outbox.mark_sent(conn, first)  # the late sender: fenced off
        assert statuses(db) == [("opened", "pending")]
        assert app(slack).send(conn, second).accepted  # finds the message, posts no other
        outbox.mark_sent(conn, second)
    assert statuses(db) == [("opened", "sent")]
    assert len(slack.calls("chat.postMessage")) == 1 and len(slack.top_level()) == 1
