"""The console's overview and events pages: what a person sees there, on real PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.storage.metrics import roll_up
from tests import streams
from tests.conftest import make_settings
from tests.support import TOKEN, event_with, signed_headers
from webhook_service.console import events as events_page
from webhook_service.main import create_app

WEBHOOK = "/api/v1/webhooks/stripe"
T0 = 1_780_000_000  # 2026-05-28 20:26:40 UTC
SCRIPT = "<script>alert(1)</script>"
REVERSED = {"since": "2026-05-29", "until": "2026-05-28"}


def post(client: TestClient, body: bytes) -> None:
    assert client.post(WEBHOOK, content=body, headers=signed_headers(body)).status_code == 200


def sign_in(client: TestClient) -> TestClient:
    response = client.post("/console/sign-in", data={"token": TOKEN, "next": "/console"})
    assert response.status_code == 200  # followed the redirect: the client keeps the cookie
    return client


class _Text(HTMLParser):
    """The text inside the element with a given id."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.parts = element_id, 0, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.depth or dict(attrs).get("id") == self.element_id:
            self.depth += tag not in ("br", "input", "img", "circle", "line", "rect", "path")

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def text(html: str, element_id: str) -> str:
    parser = _Text(element_id)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def totals(html: str, grain: str) -> dict[str, str]:
    """Each chart's title and the total beside it, for the hourly or the daily range."""
    found = re.findall(
        rf'<span class="trend-title">([^<]*)</span>\s*'
        rf'<strong class="trend-total" id="total-{grain}-\d+">([^<]*)</strong>',
        html,
    )
    return dict(found)


class TestOverview:
    def test_shows_the_rolled_up_traffic_the_summary_and_the_loop_health(self, client, db):
        at = window_floor(datetime.now(UTC)) - timedelta(hours=2)
        traffic = [
            *streams.succeeded_payment(at, "a", 1099, "usd"),
            *streams.succeeded_payment(at + timedelta(minutes=1), "b", 2000, "usd"),
            *streams.succeeded_payment(at + timedelta(minutes=2), "c", 500, "eur"),
            *streams.succeeded_payment(at + timedelta(minutes=3), "d", 1099, "jpy"),
            *streams.failed_payment(at + timedelta(minutes=4), "e"),
            *streams.refund(at, "r"),
            *streams.dispute(at, "x"),
            *streams.cancellation(at, "s"),
        ]
        for event in traffic:
            post(client, json.dumps(event).encode())
        bad = event_with("charge.failed.json", id="evt_forged")
        response = client.post(WEBHOOK, content=bad, headers=signed_headers(bad, "whsec_other"))
        assert response.status_code == 400
        roll_up(db, window_floor(at), window_floor(datetime.now(UTC)) + WINDOW)
        db.execute(
            "INSERT INTO daily_summaries (date, facts, overall, highlights, watch, text)"
            " VALUES (%s, '{}', 'A quiet day: 5 payments.', '[\"1 dispute\"]', '[]', 'x')",
            (at.date() - timedelta(days=1),),
        )

        response = sign_in(client).get("/console/overview")

        assert response.status_code == 200
        html = response.text
        for grain in ("hour", "day"):  # the hourly and the daily ranges both hold that traffic
            assert totals(html, grain) == {
                "Payments": "5",
                "Failure rate": "20.0 %",
                "Revenue USD": "30.99 USD",
                "Revenue EUR": "5.00 EUR",
                "Revenue JPY": "1,099 JPY",  # a zero-decimal currency: no cents
                "Refunds": "1",
                "Disputes": "1",
                "Cancellations": "1",
                "Webhook events": str(len(traffic)),
                "Rejected webhooks": "1",
            }
        assert 'data-buckets="24"' in html and 'data-buckets="7"' in html
        assert "Payments per hour" in text(html, "hour-0-desc")
        assert text(html, "revenue").startswith("Currency Last 24 hours Last 7 days USD 30.99 USD")
        assert "A quiet day: 5 payments." in text(html, "summary")
        # Stored but never evaluated by the rules: the loop says it is behind, and why.
        assert text(html, "health-status") == "degraded"
        assert "evaluation lag" in text(html, "health-reasons")
        assert text(html, "health-stale").startswith(f"{at:%Y-%m-%d %H:%M} UTC")
        assert (text(html, "health-pending"), text(html, "health-failed")) == ("0", "0")
        assert text(html, "health-watermark") == "off (STRIPE_API_KEY unset)"

    def test_an_empty_install_reads_ok_with_empty_charts(self, client):
        html = sign_in(client).get("/console/overview").text
        assert text(html, "health-status") == "ok"
        assert totals(html, "hour") == {
            "Payments": "0", "Failure rate": "–", "Refunds": "0", "Disputes": "0",
            "Cancellations": "0", "Webhook events": "0", "Rejected webhooks": "0",
        }  # fmt: skip
        assert "No daily summary yet" in html


@pytest.fixture
def history(client):
    """Five events a minute apart, the oldest delivered twice; two types."""
    for n in range(5):
        name = "charge.failed.json" if n % 2 else "charge.succeeded.json"
        post(client, event_with(name, id=f"evt_page_{n}", created=T0 + 60 * n))
    post(client, event_with("charge.succeeded.json", id="evt_page_0", created=T0))
    return sign_in(client)


def ids(html: str) -> list[str]:
    return re.findall(r'<td class="id"><a href="[^"]*">([^<]*)</a>', html)


class TestEvents:
    def test_an_id_opens_the_event_with_its_deliveries_source_and_payload(self, history):
        response = history.get("/console/events", params={"id": " evt_page_0 "})

        assert response.url.path == "/console/events/evt_page_0"
        html = response.text
        assert text(html, "event-deliveries") == "2"
        assert text(html, "event-source") == "webhook"
        assert '"id": "evt_page_0"' in text(html, "payload")

    def test_browses_by_type_and_time_newest_first_a_page_at_a_time(self, history, monkeypatch):
        monkeypatch.setattr(events_page, "PAGE_SIZE", 2)
        seen, url = [], "/console/events?type=charge.succeeded&since=2026-05-28T20%3A26%3A00"
        while url:
            html = history.get(url).text
            seen += ids(html)
            found = re.search(r'<a rel="next" href="([^"]*)"', html)
            url = found.group(1).replace("&amp;", "&") if found else ""
        assert seen == ["evt_page_4", "evt_page_2", "evt_page_0"]
        until = history.get("/console/events", params={"until": "2026-05-28T20:28:40Z"}).text
        assert ids(until) == ["evt_page_1", "evt_page_0"]

    def test_customer_strings_with_markup_are_shown_escaped(self, client):
        event = json.loads(event_with("charge.failed.json", id="evt_markup"))
        event["data"]["object"]["description"] = f"{SCRIPT} <b>bold</b>"
        post(client, json.dumps(event).encode())
        forged = SCRIPT.encode()
        client.post(WEBHOOK, content=forged, headers=signed_headers(forged, "whsec_other"))
        sign_in(client)

        pages = [
            client.get("/console/events/evt_markup"),
            client.get("/console/events", params={"type": SCRIPT}),
            client.get("/console/events/rejections"),
        ]

        for response in pages:
            assert response.status_code == 200
            assert SCRIPT not in response.text and "<b>bold" not in response.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
            assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "signature mismatch" in text(pages[2].text, "rejection-rows")

    def test_an_unknown_event_is_a_404_page(self, history):
        response = history.get("/console/events/evt_never")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "evt_never was never received" in response.text

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            pytest.param({"since": "yesterday"}, "since is not a time", id="since not a time"),
            pytest.param({"until": "2026-13-01"}, "until is not a time", id="no 13th month"),
            pytest.param({"type": "x" * 201}, "at most 200 characters", id="type too long"),
            pytest.param(REVERSED, "since must be before until", id="since after until"),
            pytest.param({"cursor": "bm90LW91cnM"}, "not one this console made", id="cursor"),
            pytest.param({"id": "ch_123"}, "starts with evt_", id="not an event id"),
        ],
    )
    def test_a_bad_filter_is_a_400_that_says_what_to_fix(self, history, params, message):
        response = history.get("/console/events", params=params)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert message in text(response.text, "problem")


PAGES = [
    "/console/overview",
    "/console/events?type=charge.failed",
    "/console/events/evt_x",
    "/console/events/rejections",
]


class TestAccess:
    @pytest.mark.parametrize("path", PAGES)
    def test_without_a_session_the_pages_send_to_sign_in_and_back(self, client, path):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/console/sign-in?next={quote(path, safe='/')}"

    def test_public_reads_open_the_pages_without_signing_in(self, database_url, tmp_path):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as client:
            post(client, event_with("charge.failed.json", id="evt_public"))
            for path in ("/console/overview", "/console/events", "/console/events/evt_public"):
                response = client.get(path, follow_redirects=False)
                assert response.status_code == 200, path
                assert "Read-only" in response.text
