"""The incidents list and the incident page without a browser: order, filters, escaping, the
security headers, and actions through the anomaly lifecycle (actor, CSRF, conflicts)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.support import auth
from tests.webhook_service.test_anomalies_api import add_anomaly
from webhook_service.main import create_app

MARKUP = '<script>alert("x")</script><b>bold</b>'


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


def act(client, anomaly_id, status, note="", csrf=None, **headers):
    page = client.get(f"/console/incidents/{anomaly_id}")
    return client.post(
        f"/console/incidents/{anomaly_id}/status",
        data={"status": status, "note": note, "csrf": csrf_of(page.text) if csrf is None else csrf},
        headers=headers,
        follow_redirects=False,
    )


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/console/incidents/(\d+)"', html)]


class TestList:
    def test_what_needs_someone_comes_first_worst_first(self, console, db):
        low = add_anomaly(db, severity="low", minutes=1)
        high = add_anomaly(db, severity="high", minutes=2)
        done = add_anomaly(db, severity="high", minutes=3, status="resolved")
        acked = add_anomaly(db, severity="medium", minutes=4, status="acknowledged")
        assert listed_ids(console.get("/console").text) == [high, acked, low]
        assert listed_ids(console.get("/console?status=all").text) == [high, acked, low, done]
        assert listed_ids(console.get("/console?status=resolved").text) == [done]
        assert listed_ids(console.get("/console?severity=low").text) == [low]
        demo = add_anomaly(db, severity="low", rule="dispute_spike", demo=True)
        assert listed_ids(console.get("/console?demo=only").text) == [demo]
        assert listed_ids(console.get("/console?rule=dispute_spike").text) == [demo]

    def test_pages_and_the_live_refresh_fragment(self, console, db):
        for minute in range(55):
            add_anomaly(db, minutes=minute)
        first = console.get("/console")
        assert len(listed_ids(first.text)) == 50
        following = re.search(r'rel="next" href="([^"]+)"', first.text)[1].replace("&amp;", "&")
        second = console.get(following)
        assert len(listed_ids(second.text)) == 5
        assert not set(listed_ids(first.text)) & set(listed_ids(second.text))
        rows = console.get("/console?partial=rows")
        assert rows.text.lstrip().startswith("<tr") and "<html" not in rows.text

    @pytest.mark.parametrize(
        ("query", "message"),
        [("status=closed", "status must be one of"), ("severity=urgent", "severity must be"),
         ("rule=no_such_rule", "no anomaly has that rule"), ("cursor=garbage", "cursor")],
        ids=["unknown-status", "unknown-severity", "unknown-rule", "forged-cursor"],
    )  # fmt: skip
    def test_a_bad_filter_is_a_clear_message_on_the_page(self, console, db, query, message):
        add_anomaly(db)
        answer = console.get(f"/console?{query}")
        assert answer.status_code in (400, 422)
        assert answer.headers["content-type"].startswith("text/html")
        assert message in answer.text

    def test_markup_in_a_title_is_shown_not_run(self, console, db):
        anomaly_id = add_anomaly(db)
        db.execute("UPDATE anomalies SET title = %s, evidence = evidence || jsonb_build_object("
                   "'note', %s::text)", (MARKUP, MARKUP))  # fmt: skip
        for path in ("/console", f"/console/incidents/{anomaly_id}"):
            html = console.get(path).text
            assert "<script>alert" not in html and "<b>bold</b>" not in html
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html

    def test_pages_with_data_carry_the_security_headers(self, console, db):
        anomaly_id = add_anomaly(db)
        for path in ("/console", f"/console/incidents/{anomaly_id}", "/console/incidents/999"):
            headers = console.get(path).headers
            policy = headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"

    def test_an_unknown_incident_is_a_404_page(self, console):
        answer = console.get("/console/incidents/424242")
        assert answer.status_code == 404 and "anomaly 424242 does not exist" in answer.text
        assert answer.headers["content-type"].startswith("text/html")


class TestActions:
    def test_acknowledge_and_resolve_record_the_console_user(self, console, db):
        anomaly_id = add_anomaly(db)
        done = act(console, anomaly_id, "acknowledged", "looking into it")
        assert done.status_code == 303
        page = console.get(done.headers["location"])
        assert "Done: the incident is now acknowledged" in page.text
        assert act(console, anomaly_id, "resolved").status_code == 303
        api = console.get(f"/api/v1/anomalies/{anomaly_id}", headers=auth())
        history = [(h["to_status"], h["actor"], h["note"]) for h in api.json()["history"]]
        assert history == [("open", "rules", None),
                           ("acknowledged", "console:alice", "looking into it"),
                           ("resolved", "console:alice", None)]  # fmt: skip

    def test_a_second_tab_gets_a_conflict_message_and_history_stays_whole(self, console, db):
        anomaly_id = add_anomaly(db)
        stale = csrf_of(console.get(f"/console/incidents/{anomaly_id}").text)
        assert act(console, anomaly_id, "acknowledged").status_code == 303
        again = act(console, anomaly_id, "acknowledged", csrf=stale)  # the other tab's form
        assert again.status_code == 409
        assert "cannot move from acknowledged to acknowledged" in again.text
        assert 'id="status">acknowledged' in again.text
        rows = db.execute("SELECT count(*) FROM anomaly_history WHERE anomaly_id = %s",
                          (anomaly_id,)).fetchone()[0]  # fmt: skip
        assert rows == 2

    @pytest.mark.parametrize(
        ("csrf", "headers"),
        [("", {}), ("forged", {}), (None, {"Origin": "https://evil.example"})],
        ids=["no-csrf-token", "wrong-csrf-token", "another-origin"],
    )  # fmt: skip
    def test_a_forged_form_changes_nothing(self, console, db, csrf, headers):
        anomaly_id = add_anomaly(db)
        answer = act(console, anomaly_id, "resolved", csrf=csrf, **headers)
        assert answer.status_code == 403
        assert db.execute("SELECT status FROM anomalies").fetchone()[0] == "open"

    def test_public_reads_open_pages_never_actions(self, database_url, tmp_path, db):
        anomaly_id = add_anomaly(db)
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as reader:
            page = reader.get(f"/console/incidents/{anomaly_id}")
            assert page.status_code == 200 and "Sign in</a> to acknowledge" in page.text
            answer = reader.post(f"/console/incidents/{anomaly_id}/status",
                                 data={"status": "resolved"}, follow_redirects=False)  # fmt: skip
            assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]
        assert db.execute("SELECT status FROM anomalies").fetchone()[0] == "open"


def test_the_incident_links_to_its_dagster_run_and_partition(console, db):
    anomaly_id = add_anomaly(db)
    db.execute('UPDATE anomalies SET evidence = evidence || \'{"dagster_run_id": "abc-123"}\'')
    html = console.get(f"/console/incidents/{anomaly_id}").text
    assert 'href="http://127.0.0.1:3000/runs/abc-123"' in html
    assert "/assets/anomalies?view=partitions&amp;partition=2026-05-01-00%3A00" in html


@pytest.mark.parametrize(
    ("evidence", "said"),
    [
        ('{"look": {"minutes": 2}}', "2 min into its 5-minute window: the window is still open"),
        ('{"early_look": {"minutes": 3}}', "3 min into its 5-minute window: confirmed once"),
        ('{"look": {"minutes": 1}, "unconfirmed": {"look": {"minutes": 1}, "value": 11,'
         ' "bound": 19, "label": "failed payments in 5 min"}}',
         "not confirmed once the window closed (it read failed payments in 5 min 11, alarm at"
         " 19)"),
    ],
)  # fmt: skip
def test_an_incident_found_by_an_early_look_says_what_its_closed_window_said(
    console, db, evidence, said
):
    anomaly_id = add_anomaly(db)
    db.execute("UPDATE anomalies SET evidence = evidence || %s::jsonb", (evidence,))
    html = console.get(f"/console/incidents/{anomaly_id}").text
    assert said in re.sub(r"\s+", " ", html)
