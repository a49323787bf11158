"""Console sign-in: a token once, then a signed HttpOnly SameSite=Strict session; sign-out,
expiry, forgery and a removed token all end it, and sign-in returns you where you were going."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.support import TOKEN
from webhook_service.console.sessions import COOKIE, SessionSigner
from webhook_service.main import create_app

NAMED = f"alice={TOKEN}"


def sign_in(client: TestClient, token: str = TOKEN, next_path: str = "/console"):
    return client.post(
        "/console/sign-in", data={"token": token, "next": next_path}, follow_redirects=False
    )


@pytest.fixture
def console(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=NAMED)
    with TestClient(create_app(settings)) as client:
        yield client


class TestSignIn:
    def test_a_page_asks_for_a_token_and_returns_to_it_after(self, console):
        asked = console.get("/console/incidents/7?tab=x", follow_redirects=False)
        assert asked.status_code == 303
        assert asked.headers["location"] == "/console/sign-in?next=/console/incidents/7%3Ftab%3Dx"

        form = console.get(asked.headers["location"])
        assert 'name="token"' in form.text and 'type="password"' in form.text

        wrong = sign_in(console, "not-the-token", "/console/incidents/7?tab=x")
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert COOKIE not in console.cookies

        signed = sign_in(console, TOKEN, "/console/incidents/7?tab=x")
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console/incidents/7?tab=x"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie  # the browser keeps a session, never the token
        page = console.get("/console")
        assert page.status_code == 200 and "Signed in as <strong>alice</strong>" in page.text

    @pytest.mark.parametrize(
        "target", ["https://evil.example/", "//evil.example/x", "/api/v1/anomalies"],
        ids=["another-site", "scheme-relative", "outside-the-console"],
    )  # fmt: skip
    def test_sign_in_never_sends_you_off_the_console(self, console, target):
        assert sign_in(console, TOKEN, target).headers["location"] == "/console"

    def test_sign_out_ends_the_session(self, console):
        sign_in(console)
        page = console.get("/console")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        out = console.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert (
            f'{COOKIE}=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
        )
        assert console.get("/console", follow_redirects=False).status_code == 303

    def test_a_forged_or_expired_session_is_no_session(self, console, tmp_path):
        sign_in(console)
        good = console.cookies[COOKIE]
        body, signature = good.split(".")
        forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
        console.cookies.clear()
        console.cookies.set(COOKIE, forged)
        assert console.get("/console", follow_redirects=False).status_code == 303

        key = (tmp_path / "session-key").read_text().strip().encode()
        _, expired = SessionSigner(key).issue("alice", now=time.time() - 13 * 3600)
        console.cookies.clear()
        console.cookies.set(COOKIE, expired)
        assert console.get("/console", follow_redirects=False).status_code == 303

    def test_removing_a_token_ends_its_sessions(self, database_url, tmp_path):
        named = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=NAMED)
        with TestClient(create_app(named)) as first:
            sign_in(first)
            cookie = first.cookies[COOKIE]
        rotated = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN="bob=so_other_1234")
        with TestClient(create_app(rotated)) as second:
            second.cookies.set(COOKIE, cookie)
            assert second.get("/console", follow_redirects=False).status_code == 303

    def test_no_token_configured_means_nobody_signs_in(self, database_url, tmp_path):
        closed = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN="")
        with TestClient(create_app(closed)) as client:
            answer = sign_in(client, "anything")
            assert answer.status_code == 503 and "SENTINELOPS_API_TOKEN" in answer.text

    def test_root_leads_to_the_console(self, console):
        answer = console.get("/", follow_redirects=False)
        assert answer.status_code == 307 and answer.headers["location"] == "/console"
