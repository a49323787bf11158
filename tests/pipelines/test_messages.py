"""Slack messages carry outside text (anomaly titles, the summary, job names) in the top-level
`text` too, which Slack shows in notifications and parses like the blocks: it is escaped the
same way, so nothing in it can ping a channel or hide a link. Posted through slack_sdk to a local
server, so the assertions are on the payload Slack would get."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sentinelops.slack import messages
from sentinelops_pipelines.slack import SlackResource
from tests.local_http import ScriptedServer

HOSTILE = "<!channel> <@U024BE7LH> see <https://evil.example|the dashboard> & act"
ESCAPED = (
    "&lt;!channel&gt; &lt;@U024BE7LH&gt; see &lt;https://evil.example|the dashboard&gt; &amp; act"
)
START = datetime(2026, 3, 9, 5, 0, tzinfo=UTC)


def alert(title: str) -> tuple[str, list[dict]]:
    anomaly = {"id": 7, "title": title, "scope": "all", "rule": "payment_failure_spike",
               "current_severity": "high", "status": "open", "window_start": START,
               "window_end": START.replace(minute=5), "evidence": {"failed": 12}}  # fmt: skip
    return messages.anomaly_alert({"anomaly": anomaly, "severity": "high", "kind": "opened"})


def summary(text: str) -> tuple[str, list[dict]]:
    return messages.summary_message({"date": date(2026, 3, 9), "used_ai": True, "model": "gpt",
                                     "overall": text, "highlights": [text], "watch": [],
                                     "text": text})  # fmt: skip


def failure(job_name: str) -> tuple[str, list[dict]]:
    return messages.failure_message(job_name, "run-1234", "boom")


def mrkdwn(node: object) -> list[str]:
    """Every text Slack parses for mentions and links (plain_text headers are shown as is)."""
    if isinstance(node, list):
        return [t for item in node for t in mrkdwn(item)]
    if not isinstance(node, dict):
        return []
    own = [node["text"]] if node.get("type") == "mrkdwn" else []
    return own + [t for value in node.values() for t in mrkdwn(value)]


def posted(text: str, blocks: list[dict]) -> dict:
    with ScriptedServer() as slack:
        assert SlackResource(webhook_url=slack.url, timeout_seconds=1).post(text, blocks).accepted
    (request,) = slack.received
    return request.json()


class TestTheNotificationText:
    @pytest.mark.parametrize(
        "build",
        [
            pytest.param(alert, id="an_anomaly_title"),
            pytest.param(summary, id="the_daily_summary_text"),
            pytest.param(failure, id="a_pipeline_job_name"),
        ],
    )
    def test_is_escaped_like_the_blocks(self, build):
        payload = posted(*build(HOSTILE))
        assert ESCAPED in payload["text"]
        assert "<" not in payload["text"] and ">" not in payload["text"]
        parsed = " ".join([payload["text"], *mrkdwn(payload["blocks"])])
        assert "<!" not in parsed and "<@" not in parsed and "<http" not in parsed

    def test_a_long_text_is_cut_without_splitting_an_entity(self):
        text, _ = summary("&" * 2000)
        assert len(text) <= messages.TEXT_LIMIT and text.endswith("…")
        assert text[:-1].replace("&amp;", "") == ""

    def test_plain_text_is_not_escaped_twice_or_changed(self):
        text, _ = summary("1,728 payments on 2026-03-09, 16.7% failed")
        assert text == "1,728 payments on 2026-03-09, 16.7% failed"
