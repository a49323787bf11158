"""The daily summary: facts from the rollups and anomalies, a deterministic text always, AI
wording through the real openai client only when every number checks out, posted once.
The fact check and the refusals in detail: test_fact_check.py."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import pytest

from sentinelops.settings import Settings
from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.reporting import daily_summary
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.summary.numbers import unknown_numbers
from sentinelops_pipelines.summary.writers import (
    OpenAISummary,
    SummaryWriter,
    TemplateSummary,
    writer_for,
)
from tests.local_http import Reply, ScriptedServer

DAY = date(2026, 3, 9)
WINDOW_COLUMNS = (
    "window_start, payment_attempts, payments_failed, payments_succeeded, refunds, disputes,"
    " subscriptions_created, subscriptions_cancelled"
)


def at(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


@pytest.fixture
def traffic(db):
    """Seven ordinary days, then DAY: every payment of every window failing, refunds and
    disputes up, revenue down."""
    with db.cursor() as cur:
        with cur.copy(f"COPY window_metrics ({WINDOW_COLUMNS}) FROM STDIN") as copy:
            for d in range(8):
                day, special = DAY - timedelta(days=7 - d), d == 7
                for w in range(288):
                    failed = 1 if special or w % 6 == 0 else 0
                    refunds = int(w < 6) if special else int(w == 0)
                    disputes = int(special and w < 3)
                    started, cancelled = int(w % 48 == 0), int(w % 96 == 0)
                    copy.write_row((at(day) + timedelta(minutes=5 * w), 6, failed, 6 - failed,
                                    refunds, disputes, started, cancelled))  # fmt: skip
        with cur.copy(
            "COPY window_amounts (currency, window_start, payments, amount_sum, amount_max,"
            " max_event_id, log_amount_sum) FROM STDIN"
        ) as copy:
            for d in range(8):
                day, special = DAY - timedelta(days=7 - d), d == 7
                for w in range(288):
                    start = at(day) + timedelta(minutes=5 * w)
                    copy.write_row(("usd", start, 5, 4000 if special else 5000, 1000, "evt_x", 1.0))
                    if special and w == 0:
                        copy.write_row(("eur", start, 1, 2500, 2500, "evt_y", 1.0))


def incident(
    db,
    rule: str,
    severity: str,
    start: datetime,
    status: str = "open",
    resolved: datetime | None = None,
    demo: bool = False,
    silenced_by: int | None = None,
    cleared_at: datetime | None = None,
) -> None:
    db.execute(
        "INSERT INTO anomalies (rule, severity, status, title, window_start, window_end,"
        " resolved_at, evidence, silenced_by, cleared_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (rule, severity, status, f"{rule} ({severity})", start, start + timedelta(minutes=5),
         resolved, json.dumps({"_demo": True} if demo else {}), silenced_by, cleared_at),
    )  # fmt: skip


@pytest.fixture
def week(db, traffic):
    """The traffic, and anomalies opened, resolved and left open around DAY."""
    incident(db, "payment_failure_spike", "high", at(DAY, 5))
    incident(db, "refund_spike", "medium", at(DAY, 1), "resolved", at(DAY, 3))
    incident(db, "dispute_spike", "low", at(DAY - timedelta(days=2), 9), "acknowledged")
    incident(db, "payment_failure_spike", "high", at(DAY, 7), demo=True)


@pytest.fixture
def held(db, traffic):
    """DAY's incidents: an ordinary one, one found during a planned maintenance's silence, one
    that cleared on its own and is still open, and one that cleared and was resolved."""
    (silence,) = db.execute(
        "INSERT INTO silences (rule, starts_at, ends_at, reason, created_by)"
        " VALUES ('refund_spike', %s, %s, 'card network maintenance', 'api:alice') RETURNING id",
        (at(DAY, 9), at(DAY, 12)),
    ).fetchone()
    incident(db, "payment_failure_spike", "high", at(DAY, 5))
    incident(db, "refund_spike", "medium", at(DAY, 10), silenced_by=silence)
    incident(db, "dispute_spike", "low", at(DAY, 2), cleared_at=at(DAY, 3))
    incident(db, "churn_spike", "high", at(DAY, 14), "resolved", at(DAY, 16),
             cleared_at=at(DAY, 15))  # fmt: skip


def summarise(url: str, writer: SummaryWriter, slack_url: str, day: date = DAY):
    return dg.materialize(
        [daily_summary],
        partition_key=day.isoformat(),
        resources={
            "postgres": PostgresResource(database_url=url),
            "summary_writer": writer,
            "slack": SlackResource(
                webhook_url=slack_url, timeout_seconds=0.5, retry_backoff_seconds=0
            ),
        },
    )


def stored(db, day: date = DAY) -> dict:
    columns = "facts, overall, highlights, watch, text, used_ai, ai_error, model, delivered_at"
    row = db.execute(f"SELECT {columns} FROM daily_summaries WHERE date = %s", (day,)).fetchone()
    return dict(zip(columns.split(", "), row, strict=True)) if row else {}


@pytest.fixture
def slack_server():
    with ScriptedServer() as server:
        yield server


class TestDeterministicSummary:
    def test_the_day_against_the_previous_day_and_the_7_day_average(
        self, database_url, db, week, slack_server
    ):
        assert summarise(database_url, TemplateSummary(), slack_server.url).success

        s = stored(db)
        m, a = s["facts"]["metrics"], s["facts"]["anomalies"]
        assert m["payments"] == {"day": 1728, "previous_day": 1728, "average_7d": 1728.0,
                                 "vs_previous_day_pct": 0.0, "vs_average_7d_pct": 0.0}  # fmt: skip
        assert (m["failure_rate_pct"]["day"], m["failure_rate_pct"]["average_7d"]) == (16.7, 2.8)
        assert (m["refunds"]["day"], m["disputes"]["day"]) == (6, 3)
        revenue = [(r["currency"], r["day"], r["vs_average_7d_pct"]) for r in s["facts"]["revenue"]]
        assert revenue == [("USD", 11520.0, -20.0), ("EUR", 25.0, None)]
        assert (a["opened"]["total"], a["still_open"], a["resolved"]["medium"]) == (
            2, {"high": 1, "medium": 0, "low": 1, "total": 2}, 1)  # fmt: skip
        assert (s["used_ai"], s["ai_error"]) == (False, "ai_not_configured")
        assert "1,728 payments on 2026-03-09, 16.7% failed" in s["overall"]
        assert any(w.startswith("Failure rate 16.7% against a 7-day average of 2.8%")
                   for w in s["watch"])  # fmt: skip
        assert "1 high anomaly still open" in s["watch"]
        assert [line for line in s["text"].splitlines() if line.endswith(":")] == [
            "Highlights:", "Watch:"]  # fmt: skip
        assert unknown_numbers(s["text"], s["facts"]) == []  # the template computes nothing

    def test_a_day_without_traffic_is_summarised_calmly(self, database_url, db, slack_server):
        assert summarise(database_url, TemplateSummary(), slack_server.url).success
        s = stored(db)
        assert s["overall"].startswith("No rolled-up traffic for 2026-03-09")
        assert s["watch"] == [] and "Nothing needs watching." in s["text"]
        assert s["delivered_at"] is not None

    def test_posted_once_however_often_the_day_is_rebuilt(
        self, database_url, db, week, slack_server
    ):
        for _ in range(3):
            summarise(database_url, TemplateSummary(), slack_server.url)
        (message,) = slack_server.received
        blocks = message.json()["blocks"]
        assert blocks[0]["text"]["text"] == "Daily operations summary · 2026-03-09 (UTC)"
        assert [b["text"]["text"].split("\n")[0] for b in blocks[1:4]] == [
            "*Overall*", "*Highlights*", "*Watch*"]  # fmt: skip
        assert stored(db)["delivered_at"] is not None

    def test_slack_down_keeps_it_undelivered_until_the_alerts_run(
        self, database_url, db, week, slack_server
    ):
        slack_server.script(Reply(503, "unavailable"), Reply(200, "ok"))
        summarise(database_url, TemplateSummary(), slack_server.url)
        assert stored(db)["delivered_at"] is None
        dg.materialize(
            [slack_notifications],
            resources={"postgres": PostgresResource(database_url=database_url),
                       "slack": SlackResource(webhook_url=slack_server.url,
                                              retry_backoff_seconds=0)},
        )  # fmt: skip
        assert len(slack_server.accepted) == 1 and stored(db)["delivered_at"] is not None


class TestSilencedAndClearedIncidents:
    """Counted apart from opened / still open / resolved, said by the deterministic wording,
    and figures the AI may use."""

    def test_counted_apart_and_said(self, database_url, db, held, slack_server):
        assert summarise(database_url, TemplateSummary(), slack_server.url).success

        s = stored(db)
        a = s["facts"]["anomalies"]
        assert [a[k]["total"] for k in ("opened", "still_open", "resolved")] == [4, 3, 1]
        assert a["silenced"] == {"high": 0, "medium": 1, "low": 0, "total": 1}
        assert (a["cleared"]["total"], a["cleared_still_open"]) == (
            2, {"high": 0, "medium": 0, "low": 1, "total": 1})  # fmt: skip
        assert "4 anomalies opened (1 during a silence), 3 still open" in s["overall"]
        assert ("Anomalies: 4 opened (2 high, 1 medium, 1 low), 1 resolved, 3 still open,"
                " 1 found during a silence, 2 cleared") in s["highlights"]  # fmt: skip
        # The resolved one cleared too, but nobody has to act on it.
        assert [w for w in s["watch"] if "cleared" in w] == [
            "1 anomaly cleared on its own but is still open: resolve it or look why"
        ]
        assert unknown_numbers(s["text"], s["facts"]) == []

    def test_the_ai_may_word_them(self, database_url, db, held, slack_server):
        overall = "4 incidents opened on 2026-03-09, one of them during a silence; 3 still open."
        watch = ["One incident cleared on its own but is still open: resolve it or look why."]
        content = {
            "overall": overall,
            "watch": watch,
            "highlights": ["Two incidents cleared on their own, 1 was resolved."],
        }
        with ScriptedServer(Reply(200, completion(json.dumps(content)))) as ai:
            writer = OpenAISummary(api_key="sk-test-key", base_url=f"{ai.url}/v1", model="gpt-test")
            assert summarise(database_url, writer, slack_server.url).success

        s = stored(db)
        assert (s["used_ai"], s["ai_error"], s["overall"], s["watch"]) == (
            True, None, overall, watch)  # fmt: skip
        (sent,) = ai.received
        facts = json.loads(next(m["content"] for m in sent.json()["messages"]
                                if m["role"] == "user"))  # fmt: skip
        assert facts["anomalies"]["cleared_still_open"]["total"] == 1


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_772_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 90, "total_tokens": 990},
    }  # fmt: skip


HIGHLIGHTS = ["Revenue was 11,520.00 USD, down 20.0% on its 7-day average.",
              "Three disputes and 6 refunds came in."]  # fmt: skip


def answer(overall: str, highlights: list[str] = HIGHLIGHTS) -> Reply:
    return Reply(200, completion(json.dumps({
        "overall": overall,
        "highlights": highlights,
        "watch": ["One high anomaly is still open."],
    })))  # fmt: skip


GOOD = "A steady 1,728 payments on 2026-03-09, but 16.7% failed against a 7-day average of 2.8%."
INVENTED = "About 1,700 payments on 2026-03-09, and 17% failed."
# The week's revenue fell 20.0% and its refunds rose 500.0%; these say so in other words.
FAITHFUL = ["Revenue fell 20.0% against the 7-day average, to 11,520.00 USD.",
            "Refunds rose 500.0% on the previous day; three disputes came in."]  # fmt: skip
SIGN_FLIPPED = ["Revenue was 11,520.00 USD, up 20.0% on its 7-day average.", *HIGHLIGHTS[1:]]
HOSTILE = {
    "ai_refused_mention": f"<!channel> {GOOD}",
    "ai_refused_link": f"{GOOD} Details: <https://evil.example/login|the dashboard>",
    "ai_refused_markup": f"*{GOOD}*",
}


def error(status: int, code: str, kind: str) -> Reply:
    return Reply(status, {"error": {"message": "refused", "type": kind, "param": None,
                                    "code": code}})  # fmt: skip


class TestAIWording:
    @pytest.mark.parametrize(
        ("replies", "used_ai", "ai_error", "calls"),
        [
            pytest.param([answer(GOOD)], True, None, 1, id="a_good_answer_is_used"),
            pytest.param([answer(INVENTED)], False, "ai_numeric_mismatch", 1,
                         id="an_invented_number_discards_the_answer"),
            pytest.param([answer(GOOD, FAITHFUL)], True, None, 1,
                         id="changes_worded_with_their_direction_are_used"),
            pytest.param([answer(GOOD, SIGN_FLIPPED)], False, "ai_wrong_direction", 1,
                         id="revenue_fell_but_the_answer_says_up"),
            pytest.param([Reply(200, completion("Here is your summary!"))], False,
                         "ai_bad_response", 1, id="an_answer_that_is_not_the_json_asked_for"),
            pytest.param([error(429, "rate_limit_exceeded", "requests")], False,
                         "ai_rate_limited", 3, id="rate_limited_is_retried_twice"),
            pytest.param([error(429, "rate_limit_exceeded", "requests"), answer(GOOD)], True,
                         None, 2, id="rate_limited_once_then_answered"),
            pytest.param([error(429, "insufficient_quota", "insufficient_quota")], False,
                         "ai_quota", 1, id="no_quota_is_not_worth_a_retry"),
            pytest.param([error(401, "invalid_api_key", "invalid_request_error")], False,
                         "ai_auth", 1, id="a_bad_key_is_not_worth_a_retry"),
            pytest.param([Reply(hang=True)], False, "ai_timeout", 3,
                         id="a_timeout_is_retried_twice"),
            pytest.param([error(500, "server_error", "server_error"), answer(GOOD)], True, None,
                         2, id="a_server_error_is_retried"),
            pytest.param([error(400, "invalid_request", "invalid_request_error")], False,
                         "ai_failed", 1, id="a_refused_request_is_not_retried"),
        ],
    )  # fmt: skip
    def test_outcomes(
        self, database_url, db, week, slack_server, replies, used_ai, ai_error, calls
    ):
        with ScriptedServer(*replies) as ai:
            writer = OpenAISummary(api_key="sk-test-key", base_url=f"{ai.url}/v1",
                                   model="gpt-test", timeout_seconds=0.3,
                                   retry_backoff_seconds=0.01)  # fmt: skip
            assert summarise(database_url, writer, slack_server.url).success

        s = stored(db)
        assert (s["used_ai"], s["ai_error"]) == (used_ai, ai_error)
        assert len(ai.received) == calls
        request = ai.received[0]
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-test-key"
        user = [m for m in request.json()["messages"] if m["role"] == "user"]
        assert [json.loads(m["content"]) for m in user] == [s["facts"]]  # the whole input
        assert s["overall"] == GOOD if used_ai else s["overall"].startswith("1,728 payments")
        assert unknown_numbers(s["text"], s["facts"]) == []
        assert len(slack_server.accepted) == 1 and s["delivered_at"] is not None
        assert "sk-test-key" not in json.dumps(s, default=str)

    @pytest.mark.parametrize(
        ("overall", "why"),
        [pytest.param(text, why, id=why) for why, text in HOSTILE.items()],
    )
    def test_a_mention_link_or_markup_is_refused_and_never_posted(
        self, database_url, db, week, slack_server, caplog, overall, why
    ):
        with ScriptedServer(answer(overall)) as ai:
            writer = OpenAISummary(api_key="sk-test-key", base_url=f"{ai.url}/v1", model="gpt-test")
            assert summarise(database_url, writer, slack_server.url).success

        s = stored(db)
        assert (s["used_ai"], s["ai_error"]) == (False, why)
        assert f"AI wording refused: {why}" in caplog.text
        assert s["overall"].startswith("1,728 payments")
        (posted,) = slack_server.accepted
        assert "<!" not in posted.body.decode() and "evil.example" not in posted.body.decode()

    def test_the_ai_is_asked_once_per_day(self, database_url, db, week, slack_server):
        with ScriptedServer(answer(GOOD)) as ai:
            writer = OpenAISummary(api_key="sk-test-key", base_url=f"{ai.url}/v1", model="gpt-test")
            for _ in range(2):
                summarise(database_url, writer, slack_server.url)
        assert len(ai.received) == 1
        assert stored(db)["used_ai"] is True and len(slack_server.received) == 1

    def test_without_a_key_the_deterministic_summary_ships(self, database_url, db, slack_server):
        writer = writer_for(Settings(_env_file=None, OPENAI_API_KEY=""))  # type: ignore[call-arg]
        summarise(database_url, writer, slack_server.url)
        assert (stored(db)["used_ai"], stored(db)["ai_error"]) == (False, "ai_not_configured")

    def test_with_a_key_the_model_and_base_url_come_from_the_settings(self):
        settings = Settings(_env_file=None, OPENAI_API_KEY="sk-live-abc", OPENAI_MODEL="gpt-x",
                            OPENAI_BASE_URL="http://127.0.0.1:9/v1")  # type: ignore[call-arg]  # fmt: skip
        writer = writer_for(settings)
        assert isinstance(writer, OpenAISummary)
        assert (writer.api_key, writer.model, writer.base_url) == (
            "sk-live-abc", "gpt-x", "http://127.0.0.1:9/v1"
        )  # fmt: skip


def test_the_schedule_summarises_yesterday_shortly_after_midnight():
    from sentinelops_pipelines.definitions import defs

    schedule = defs.resolve_schedule_def("daily_summary_schedule")
    tick = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 10, 0, 10, tzinfo=UTC))
    )
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("10 0 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert [r.partition_key for r in tick.run_requests or []] == ["2026-03-09"]
