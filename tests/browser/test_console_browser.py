"""The console as a person uses it, in chromium: sign in, find the incident that a signed Stripe
event stream raised, read its chart, acknowledge it, meet a colleague's conflicting click,
sign out; markup in data never runs; the list keeps itself current; the README's screenshots.

One live server and one incident serve the module: the incident is built the way production
builds it (signed webhooks over HTTP, then the rule assets in Dagster), which takes seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    FloatRect,
    Page,
    expect,
)
from psycopg import sql
from psycopg.types.json import Jsonb

from sentinelops.windows import WINDOW, window_floor
from tests import streams
from tests.conftest import live_server, make_settings
from tests.pipelines.test_rule_assets import run_range
from tests.support import TOKEN, signed_headers
from webhook_service.console.sessions import COOKIE

pytestmark = pytest.mark.browser

NAME = "alice"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(1)>"
NOTE = "Card processor confirmed an outage; watching the retries."
CONTEXT = timedelta(hours=6)  # what the incident page draws either side (console/incident.py)


@dataclass(frozen=True)
class Incident:
    id: int
    title: str
    rule: str
    scope: str
    measure: str
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class Console:
    base: str
    database_url: str
    incident: Incident

    def url(self, path: str) -> str:
        return self.base + path


def post_events(base: str, events: list[dict]) -> None:
    """Each event as Stripe delivers it: its own signed POST (a few at once, as Stripe does)."""

    def deliver(client: httpx.Client, event: dict) -> int:
        body = json.dumps(event).encode()
        answer = client.post("/api/v1/webhooks/stripe", content=body, headers=signed_headers(body))
        return answer.status_code

    with httpx.Client(base_url=base, timeout=10) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda e: deliver(client, e), events))
    assert set(answers) == {200}, sorted(set(answers))


def build_incident(base: str, url: str) -> Incident:
    """Seven hours of steady payments up to the last closed window (the chart draws six before
    the incident), a 30-minute failure spike ending a quarter of an hour before it, all
    delivered over HTTP, then one rules run over the whole range."""
    last = window_floor(datetime.now(UTC)) - WINDOW
    first = last - timedelta(hours=7) + WINDOW
    spike = last - timedelta(minutes=40)
    events = streams.normal_traffic(first, hours=7, per_window=4)
    events += streams.failure_spike(spike, minutes=30, attempts=12, failing=8)
    post_events(base, events)
    assert run_range(url, first, last).success
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, title, rule, scope, evidence->'chart'->>'measure', window_start,"
            " window_end FROM anomalies WHERE rule = 'payment_failure_spike'"
        ).fetchall()
    assert len(rows) == 1, rows
    return Incident(*rows[0])


def truncate_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'"
        ).fetchall()
        names = sql.SQL(", ").join(sql.Identifier(t) for (t,) in tables)
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))


@pytest.fixture(scope="module")
def console(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("console"),
        SENTINELOPS_API_TOKEN=f"{NAME}={TOKEN}",
        # The list polls every half second, so the refresh test waits half a second, not 15.
        SENTINELOPS_CONSOLE_REFRESH_SECONDS=0.5,
    )
    try:
        with live_server(settings) as base:
            yield Console(base, database_url, build_incident(base, database_url))
    finally:
        truncate_all(database_url)


def add_anomaly(url: str, title: str, evidence: dict, rule: str = "dispute_spike") -> int:
    """An anomaly written straight to the table, as the rules would (for what no stream makes)."""
    end = window_floor(datetime.now(UTC))
    with psycopg.connect(url, autocommit=True) as conn:
        inserted = conn.execute(
            "INSERT INTO anomalies (rule, scope, severity, status, title, window_start,"
            " window_end, detected_at, evidence) VALUES (%s, 'all', 'medium', 'open', %s, %s,"
            " %s, now(), %s) RETURNING id",
            (rule, title, end - WINDOW, end, Jsonb(evidence)),
        ).fetchone()
        assert inserted is not None
        anomaly_id = int(inserted[0])
        conn.execute(
            "INSERT INTO anomaly_history (anomaly_id, from_status, to_status, actor)"
            " VALUES (%s, NULL, 'open', 'rules')",
            (anomaly_id,),
        )
    return anomaly_id


def remove_anomaly(url: str, anomaly_id: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM anomalies WHERE id = %s", (anomaly_id,))


def readings_drawn(console: Console) -> int:
    """Rows of rule_readings the incident page draws: its rule, scope and measure, from six
    hours before the incident on (every stored window is in the past, so up to now)."""
    i = console.incident
    with psycopg.connect(console.database_url) as conn:
        counted = conn.execute(
            "SELECT count(*) FROM rule_readings WHERE rule = %s AND scope = %s"
            " AND measure = %s AND window_start >= %s",
            (i.rule, i.scope, i.measure, i.window_start - CONTEXT),
        ).fetchone()
    assert counted is not None
    return int(counted[0])


def sign_in(page: Page, console: Console) -> None:
    page.goto(console.url("/console"))
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {NAME}")).to_be_visible()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) at a laptop's size."""
    fresh = browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
    yield fresh
    fresh.close()


class TestIncidentJourney:
    def test_sign_in_read_the_chart_acknowledge_meet_a_conflict_sign_out(
        self, console: Console, context: BrowserContext
    ):
        incident = console.incident
        page = context.new_page()
        sign_in(page, console)

        page.get_by_role("link", name=f"#{incident.id} {incident.title}").click()
        incident_url = console.url(f"/console/incidents/{incident.id}")
        expect(page).to_have_url(incident_url)
        expect(page.get_by_role("heading", level=1)).to_have_text(incident.title)

        # The chart: one point per stored reading, the bound, a point over it in the window.
        drawn = readings_drawn(console)
        assert drawn >= 72 + 6  # six hours of windows before the incident, then the incident
        chart = page.locator("svg[data-points]")
        expect(chart).to_have_attribute("data-points", str(drawn))
        expect(chart.locator("circle.point")).to_have_count(drawn)
        expect(chart.locator("path.bound")).to_have_count(1)
        expect(chart.locator("polyline.expected")).to_have_count(1)
        shade = chart.locator("rect.shade")
        left = float(shade.get_attribute("x") or "nan")
        right = left + float(shade.get_attribute("width") or "nan")
        over = chart.locator("circle.point.over").evaluate_all(
            "points => points.map(p => Number(p.getAttribute('cx')))"
        )
        assert any(left <= x <= right for x in over), (left, right, over)

        # A colleague's tab, opened before this one acts.
        other = context.new_page()
        other.goto(incident_url)
        expect(other.get_by_role("button", name="Acknowledge")).to_be_visible()

        page.get_by_label("Note (optional)").fill(NOTE)
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.get_by_role("status")).to_have_text("Done: the incident is now acknowledged.")
        expect(page.locator("#status")).to_have_text("acknowledged")
        latest = page.locator("#history li").last
        expect(latest).to_contain_text(f"console:{NAME}")
        expect(latest).to_contain_text(re.compile(r"open\s*→\s*acknowledged"))
        expect(latest.locator("q.note")).to_have_text(NOTE)

        # The stale tab acts: the incident page again, saying why, not an error page.
        with other.expect_response(lambda r: r.url.endswith("/status")) as answer:
            other.get_by_role("button", name="Acknowledge").click()
        assert answer.value.status == 409
        expect(other.locator("#problem")).to_contain_text(
            f"anomaly {incident.id} cannot move from acknowledged to acknowledged"
        )
        expect(other.get_by_role("heading", level=1)).to_have_text(incident.title)
        expect(other.locator("#status")).to_have_text("acknowledged")
        expect(other.locator("#history li")).to_have_count(2)

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))
        assert COOKIE not in {c["name"] for c in context.cookies()}
        page.goto(console.url("/console"))
        expect(page).to_have_url(re.compile(r"/console/sign-in\?next=/console$"))
        expect(page.get_by_label("API token")).to_be_visible()

    def test_sign_in_with_the_keyboard_only(self, console: Console, context: BrowserContext):
        page = context.new_page()
        page.goto(console.url("/console"))
        token = page.get_by_label("API token")
        expect(token).to_be_focused()  # no click needed to start typing
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        expect(page).to_have_url(console.url("/console"))
        expect(page.get_by_text(f"Signed in as {NAME}")).to_be_visible()


class TestSafety:
    def test_markup_in_a_title_evidence_or_payload_is_shown_never_run(
        self, console: Console, context: BrowserContext
    ):
        charge = streams.failed_payment(datetime.now(UTC) - timedelta(minutes=1), "markup")[0]
        charge["data"]["object"].update(description=MARKUP, metadata={"order": MARKUP})
        post_events(console.base, [charge])
        page = context.new_page()
        dialogs: list[str] = []
        refusals: list[str] = []  # what the Content-Security-Policy had to stop

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                refusals.append(message.text)

        def assert_inert() -> None:
            """Shown as text: no element made of it, so nothing the policy had to block."""
            assert page.locator("script:not([src]), img[src='x'], [onerror]").count() == 0
            assert dialogs == [] and refusals == []

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        sign_in(page, console)
        title = f"Disputes {MARKUP}"
        # Added while the list is open: it arrives through the live refresh (innerHTML).
        anomaly_id = add_anomaly(
            console.database_url,
            title,
            {"reason": MARKUP, "by": {"customer": MARKUP}, "sample_event_ids": [charge["id"]]},
        )
        try:
            listed = page.get_by_role("link", name=f"#{anomaly_id} {title}")
            expect(listed).to_be_visible()
            assert_inert()

            listed.click()
            expect(page.get_by_role("heading", level=1)).to_have_text(title)
            expect(page.locator("table.evidence")).to_contain_text(MARKUP)
            assert_inert()

            page.get_by_role("link", name=charge["id"]).click()
            expect(page).to_have_url(console.url(f"/console/events/{charge['id']}"))
            expect(page.locator("#payload")).to_contain_text(MARKUP)
            assert_inert()
        finally:
            remove_anomaly(console.database_url, anomaly_id)


class TestLiveList:
    def test_a_new_incident_appears_without_navigating(
        self, console: Console, context: BrowserContext
    ):
        page = context.new_page()
        sign_in(page, console)
        page.evaluate("window.stayed = true")  # a navigation would drop it
        title = "Dispute spike: 4 disputes in 30 min (usual 0.2)"
        anomaly_id = add_anomaly(console.database_url, title, {"count": 4})
        try:
            expect(page.get_by_role("link", name=f"#{anomaly_id} {title}")).to_be_visible()
            assert page.evaluate("window.stayed") is True
        finally:
            remove_anomaly(console.database_url, anomaly_id)


def top_of(page: Page) -> FloatRect | None:
    """An incident page down to its chart: the evidence table below runs for metres."""
    chart = page.locator("figure.chart")
    if not chart.count():
        return None
    box = chart.bounding_box()
    assert box is not None
    width = page.viewport_size["width"] if page.viewport_size else box["width"]
    return {"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 24}


SCREENSHOTS = [
    pytest.param("incidents.png", "/console", LAPTOP, id="incidents"),
    pytest.param("incident.png", "/console/incidents/{id}", LAPTOP, id="incident"),
    pytest.param("overview.png", "/console/overview", LAPTOP, id="overview"),
    pytest.param("incident-phone.png", "/console/incidents/{id}", PHONE, id="incident-phone"),
]


class TestScreenshots:
    @pytest.mark.parametrize(("name", "path", "viewport"), SCREENSHOTS)
    def test_screenshot(
        self,
        console: Console,
        browser: Browser,
        screenshots: Path,
        name: str,
        path: str,
        viewport: dict,
    ):
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            sign_in(page, console)
            answer = page.goto(console.url(path.format(id=console.incident.id)))
            assert answer is not None
            if path == "/console/overview" and answer.status != 200:
                pytest.skip(f"no {name}: GET /console/overview answers {answer.status}")
            assert answer.status == 200
            expect(page.locator("main")).to_be_visible()
            if "{id}" in path:
                expect(page.locator("figure.chart")).to_be_visible()
            # Readable at this width: nothing pushes the page sideways (wide tables scroll).
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(path=screenshots / name, full_page=True, clip=top_of(page))
        finally:
            context.close()


class TestSilences:
    def test_silence_a_rule_from_its_incident_then_end_it_from_the_silences_page(
        self, console: Console, context: BrowserContext
    ):
        reason = "Refund batch re-run by finance; expected."
        anomaly_id = add_anomaly(console.database_url, "Refunds: 9 in 30 min", {"count": 9},
                                 rule="refund_spike")  # fmt: skip
        page = context.new_page()
        try:
            sign_in(page, console)
            page.goto(console.url(f"/console/incidents/{anomaly_id}"))
            page.get_by_label("Reason for silencing refund_spike (all)").fill(reason)
            page.get_by_role("button", name="Silence this rule for 2 hours").click()

            expect(page).to_have_url(re.compile(r"/console/silences\?created=\d+$"))
            silence_id = int(page.url.rsplit("=", 1)[1])
            expect(page.get_by_role("status")).to_have_text(f"Silence #{silence_id} created.")
            expect(page.get_by_role("link", name="Silences")).to_have_attribute(
                "aria-current", "page"
            )
            row = page.locator(f"#silence-{silence_id}")
            for text in ("active", "refund_spike", "all", reason, f"console:{NAME}"):
                expect(row).to_contain_text(text)

            row.get_by_role("button", name="End now").click()
            expect(page.get_by_role("status")).to_have_text(
                f"Silence #{silence_id} ended: what it held is posted now."
            )
            row = page.locator(f"#silence-{silence_id}")
            expect(row.locator(".silence-state")).to_have_text("expired")
            expect(row.locator("td").nth(8)).to_have_text(f"console:{NAME}")  # ended by
            expect(row.get_by_role("button")).to_have_count(0)
            with psycopg.connect(console.database_url) as conn:
                ended = conn.execute(
                    "SELECT rule, scope, ended_by, ends_at <= now() FROM silences"
                ).fetchall()
            assert ended == [("refund_spike", "all", f"console:{NAME}", True)]
        finally:
            remove_anomaly(console.database_url, anomaly_id)
            with psycopg.connect(console.database_url, autocommit=True) as conn:
                conn.execute("DELETE FROM silences")
