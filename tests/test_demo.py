"""`sentinelops demo` against a running API: signed traffic in, a failure spike found; careful
about where it runs, quiet about how, and clear when it fails."""

from __future__ import annotations

import os
import pty
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sentinelops.settings import Settings
from sentinelops.slack import config
from sentinelops.slack.delivery import deliver
from sentinelops.windows import WINDOW
from sentinelops_pipelines.demo import guard, run_demo
from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests.conftest import ROOT, live_server, make_settings, serve
from tests.slack_api import CHANNEL, FakeSlack
from tests.support import SECRET, TOKEN
from webhook_service.main import create_app

PROGRESS = "sentinelops demo: "


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """SENTINELOPS_HOME as `sentinelops up` leaves it: the secret and token it generated."""
    (tmp_path / "webhook-secret").write_text(SECRET + "\n")
    (tmp_path / "api-token").write_text(TOKEN + "\n")
    return tmp_path


@pytest.fixture
def demo_settings(database_url: str, home: Path) -> Settings:
    """The user's shell beside that stack: no STRIPE_WEBHOOK_SECRET, no SENTINELOPS_API_TOKEN
    (the API that `up` started got both from the files)."""
    return make_settings(database_url, home, STRIPE_WEBHOOK_SECRET="", SENTINELOPS_API_TOKEN="")


class Recorder:
    """The real app, noting the method, path and headers of every request it serves."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.requests.append((scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)  # type: ignore[operator]


@contextmanager
def recorded_api(settings: Settings) -> Iterator[tuple[str, Recorder]]:
    """Like conftest's live_server, with every request recorded."""
    recorder = Recorder(create_app(settings))
    with serve(recorder) as base:
        yield base, recorder


def step(line: str) -> str:
    """The verb of a progress line (`sending`, `evaluating`, `done`), else the whole line."""
    return line.removeprefix(PROGRESS).split(" ", 1)[0] if line.startswith(PROGRESS) else line


def webhook_posts(recorder: Recorder) -> list[dict[str, str]]:
    return [h for method, path, h in recorder.requests if path == "/api/v1/webhooks/stripe"]


def app_mode(database_url: str, home: Path, slack: FakeSlack) -> Settings:
    """demo_settings with the Slack app pointed at `slack`."""
    return make_settings(
        database_url, home, STRIPE_WEBHOOK_SECRET="", SENTINELOPS_API_TOKEN="",
        SLACK_BOT_TOKEN="xoxb-demo", SLACK_CHANNEL_ID=CHANNEL, SLACK_API_URL=slack.url,
    )  # fmt: skip


def test_demo_traffic_becomes_a_high_failure_spike_with_curl_lines(
    settings, demo_settings, db, capsys
):
    with live_server(settings) as api:
        assert run_demo(demo_settings, api) == 0

    captured = capsys.readouterr()
    stored = db.execute("SELECT count(*), count(DISTINCT type) FROM stripe_events").fetchone()
    assert stored[0] >= 150 and stored[1] == 4
    found = db.execute("SELECT id, rule, severity FROM anomalies").fetchall()
    assert [(rule, severity) for _, rule, severity in found] == [("payment_failure_spike", "high")]
    assert f"to {api}: {stored[0]} stored." in captured.out
    assert f"#{found[0][0]} [high] payment_failure_spike" in captured.out
    assert '"status": "acknowledged"' in captured.out and '"status": "resolved"' in captured.out
    assert f"TOKEN=$(cat {demo_settings.sentinelops_home / 'api-token'})" in captured.out
    assert TOKEN not in captured.out  # the curl lines read it from its file
    # Not a terminal: a plain line per step, nothing else on stderr.
    assert [step(line) for line in captured.err.splitlines()] == ["sending", "evaluating", "done"]


def test_in_slack_app_mode_the_demo_posts_one_message_per_incident(
    settings, database_url, home, db, capsys
):
    with FakeSlack() as slack, live_server(settings) as api:
        app = app_mode(database_url, home, slack)
        assert run_demo(app, api) == 0
        assert run_demo(app, api) == 0  # a second demo extends the incident: no new message
    (anomaly_id,) = db.execute("SELECT id FROM anomalies").fetchone()
    (message,) = slack.top_level()
    assert message["metadata"]["event_payload"]["anomaly_id"] == anomaly_id
    assert f"#{anomaly_id} HIGH · open" in message["blocks"][0]["text"]["text"]
    out = capsys.readouterr().out
    assert "  Slack    1 sent" in out and "  Slack    nothing new to post" in out


def test_every_event_and_request_is_marked_as_the_demos(settings, demo_settings, db):
    with recorded_api(settings) as (api, recorder):
        assert run_demo(demo_settings, api) == 0

    rows = db.execute(
        "SELECT id, livemode, payload->'livemode',"
        " payload->'data'->'object'->'metadata'->>'sentinelops_demo' FROM stripe_events"
    ).fetchall()
    assert len(rows) == 168
    assert all(row[0].startswith("evt_demo_") for row in rows)
    assert {row[1:] for row in rows} == {(False, False, "true")}
    agents = {headers.get("user-agent", "") for _, _, headers in recorder.requests}
    assert len(agents) == 1 and agents.pop().startswith("sentinelops-demo/")


class TestFailures:
    """Every failure exits non-zero with one line that says what the API answered."""

    def test_an_api_without_a_webhook_secret_stops_at_its_503(
        self, database_url, demo_settings, db, capsys
    ):
        api_settings = make_settings(
            database_url, demo_settings.sentinelops_home, STRIPE_WEBHOOK_SECRET=""
        )
        with recorded_api(api_settings) as (api, recorder):
            assert run_demo(demo_settings, api) == 1

        *steps, last = capsys.readouterr().err.splitlines()
        assert [step(line) for line in steps] == ["sending"]
        assert last.startswith("sentinelops demo: the API refused a demo event with 503")
        assert "WebhookNotConfigured: STRIPE_WEBHOOK_SECRET is not set" in last
        assert "0 of 168 were stored" in last
        assert len(webhook_posts(recorder)) <= 8  # the refusal stopped the rest
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)

    def test_an_api_with_another_webhook_secret_says_so(self, database_url, demo_settings, capsys):
        api_settings = make_settings(
            database_url, demo_settings.sentinelops_home, STRIPE_WEBHOOK_SECRET="whsec_another"
        )
        with live_server(api_settings) as api:
            assert run_demo(demo_settings, api) == 1

        last = capsys.readouterr().err.splitlines()[-1]
        assert "400 InvalidSignature" in last and "another webhook secret" in last

    def test_a_wrong_api_token_ends_with_the_401_not_a_keyerror(
        self, settings, database_url, home, capsys
    ):
        wrong = make_settings(
            database_url, home, STRIPE_WEBHOOK_SECRET="", SENTINELOPS_API_TOKEN="not-the-token"
        )
        with live_server(settings) as api:
            assert run_demo(wrong, api) == 1

        *steps, last = capsys.readouterr().err.splitlines()
        assert [step(line) for line in steps] == ["sending", "evaluating"]
        assert "listing the anomalies failed with 401 Unauthorized" in last

    def test_an_unreachable_api_is_one_line(self, demo_settings, capsys):
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        assert run_demo(demo_settings, f"http://127.0.0.1:{port}") == 1

        *steps, last = capsys.readouterr().err.splitlines()
        assert [step(line) for line in steps] == ["sending"]
        assert last.startswith(f"sentinelops demo: cannot reach the API at http://127.0.0.1:{port}")

    def test_a_failed_evaluation_exits_1_with_its_reason(
        self, settings, database_url, home, capsys
    ):
        rules = home / "rules.toml"
        rules.write_text("[rules.payment_failure_spike]\nenabled = 'sometimes'\n")
        broken = make_settings(
            database_url,
            home,
            STRIPE_WEBHOOK_SECRET="",
            SENTINELOPS_API_TOKEN="",
            SENTINELOPS_RULES_FILE=str(rules),
        )
        with live_server(settings) as api:
            assert run_demo(broken, api) == 1

        *steps, last = capsys.readouterr().err.splitlines()
        assert [step(line) for line in steps] == ["sending", "evaluating"]
        assert last.startswith("sentinelops demo: the rules evaluation failed (Dagster run ")
        assert f"invalid rule definitions in {rules}" in last


class TestGuard:
    """Anything but this machine's own stack needs --allow-non-local, checked before sending."""

    @pytest.mark.parametrize(
        ("host", "local"),
        [
            pytest.param("localhost", True, id="localhost"),
            pytest.param("127.0.0.1", True, id="ipv4-loopback"),
            pytest.param("127.0.1.1", True, id="debian-hostname-loopback"),
            pytest.param("::1", True, id="ipv6-loopback"),
            pytest.param("[::1]", True, id="ipv6-loopback-in-url-brackets"),
            pytest.param("/var/run/postgresql", True, id="unix-socket-directory"),
            pytest.param("", True, id="libpq-default-socket"),
            pytest.param("db.example.com", False, id="a-name-elsewhere"),
            pytest.param("10.0.0.5", False, id="a-private-address-is-still-another-machine"),
            pytest.param("localhost.example.com", False, id="only-named-like-localhost"),
        ],
    )
    def test_which_hosts_are_local(self, host, local):
        assert guard.is_local_host(host) is local

    @pytest.mark.parametrize(
        ("url", "hosts"),
        [
            pytest.param("postgresql://u@127.0.0.1:5432/db", ["127.0.0.1"], id="host"),
            pytest.param("postgresql://u@a:1,b:2/db", ["a", "b"], id="every-host-of-a-list"),
            pytest.param(
                "postgresql://u@db.example.com/db?hostaddr=127.0.0.1",
                ["127.0.0.1"],
                id="hostaddr-is-where-libpq-connects",
            ),
            pytest.param("postgresql:///db?host=/tmp", ["/tmp"], id="socket-directory"),
        ],
    )
    def test_database_hosts_are_read_as_libpq_reads_them(self, url, hosts):
        assert guard.database_hosts(url) == hosts

    def test_a_remote_api_is_refused(self, demo_settings):
        secret = guard.signing_secret(demo_settings)
        assert secret is not None and secret.generated
        local_db = "postgresql://postgres@127.0.0.1:5432/db"
        assert guard.refusals("http://127.0.0.1:8000", local_db, secret) == []
        reasons = guard.refusals("https://sentinelops.example.com", local_db, secret)
        assert reasons == ["the API (sentinelops.example.com) is not on this machine"]

    def test_a_remote_database_is_refused_before_anything_is_sent(
        self, settings, demo_settings, capsys
    ):
        remote = demo_settings.model_copy(
            update={"database_url": "postgresql://ops@db.example.com:5432/sentinelops"}
        )
        with recorded_api(settings) as (api, recorder):
            assert run_demo(remote, api) == 2

        assert recorder.requests == []
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "refusing to run: the database (db.example.com) is not on this machine" in err
        assert "pass --allow-non-local" in err

    def test_a_secret_the_user_set_is_refused_until_allowed(
        self, settings, database_url, tmp_path, db, capsys
    ):
        # STRIPE_WEBHOOK_SECRET in the shell and no generated secret: possibly production's.
        mine = make_settings(database_url, tmp_path / "elsewhere")
        with recorded_api(settings) as (api, recorder):
            assert run_demo(mine, api) == 2
            assert recorder.requests == []
            assert "sign with STRIPE_WEBHOOK_SECRET" in capsys.readouterr().err

            assert run_demo(mine, api, allow_non_local=True) == 0
        assert db.execute("SELECT count(*) FROM stripe_events").fetchone() == (168,)

    def test_a_database_holding_live_events_is_refused_until_allowed(
        self, settings, demo_settings, db, capsys
    ):
        db.execute(
            "INSERT INTO stripe_events (id, type, created, livemode, payload)"
            " VALUES ('evt_live', 'charge.succeeded', now() - interval '1 day', true, %s)",
            (Jsonb({"id": "evt_live"}),),
        )
        with recorded_api(settings) as (api, recorder):
            assert run_demo(demo_settings, api) == 2
            assert recorder.requests == []
            assert "live-mode Stripe events" in capsys.readouterr().err

            assert run_demo(demo_settings, api, allow_non_local=True) == 0


def _cli_env(database_url: str, home: Path) -> dict[str, str]:
    """The user's shell: no secret or token of its own, the stack's database and home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "SENTINELOPS_", "SLACK_", "OPENAI_", "DAGSTER_"))
        and k != "LOG_LEVEL"
    }
    return {**env, "DATABASE_URL": database_url, "SENTINELOPS_HOME": str(home)}


@pytest.fixture
def stack_home(home: Path) -> Path:
    """`up`'s home with its Dagster instance too, so the demo's run is recorded there (and
    Dagster's storage, with its alembic logging, is opened as on a real stack)."""
    (home / "dagster").mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    return home


@pytest.mark.once  # the terminal's output, whatever the server: CI's embedded pass only
class TestOutput:
    """The command as a user runs it: by default one line of progress and the result."""

    def test_on_a_terminal_one_progress_line_then_the_result(
        self, settings, database_url, stack_home, db
    ):
        controller, terminal = pty.openpty()
        with live_server(settings) as api:
            process = subprocess.Popen(
                [sys.executable, "-m", "sentinelops.cli", "demo", "--api", api],
                cwd=stack_home,
                env=_cli_env(database_url, stack_home),
                stdout=subprocess.PIPE,
                stderr=terminal,
            )
            os.close(terminal)
            shown = _read_all(controller)  # until the command closes the terminal
            out = process.communicate(timeout=60)[0].decode()
        assert process.returncode == 0, shown

        # One line, redrawn in place: no newline until the last state.
        assert shown.count("\n") == 1 and shown.endswith("\n"), shown
        assert shown.count("\r\x1b[K") > 3
        assert shown.rsplit("\r\x1b[K", 1)[1].startswith("sentinelops demo: done in ")
        for chatter in ("HTTP Request", "httpx", "BetaWarning", "alembic", "INFO"):
            assert chatter not in shown
        (anomaly_id,) = db.execute("SELECT id FROM anomalies").fetchone()
        assert "168 stored" in out
        assert f"#{anomaly_id} [high] payment_failure_spike" in out
        assert "Dagster  http://127.0.0.1:3000/runs/" in out

    def test_verbose_shows_the_library_logs(self, settings, database_url, stack_home):
        with live_server(settings) as api:
            done = subprocess.run(
                [sys.executable, "-m", "sentinelops.cli", "demo", "--api", api, "--verbose"],
                cwd=stack_home,
                env=_cli_env(database_url, stack_home),
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("HTTP Request: POST") == 168
        assert "alembic" in done.stderr


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_once_the_demo_spike_is_over_its_thread_says_cleared(
    settings, database_url, home, db, capsys
):
    """What the stack's 5-minute runs do after a demo: the windows after the spike judged, one
    by one as they close, and the demo's incident cleared in its own thread once a quiet gap of
    them passed (the clock moved on with `now`: the spike ended at the last closed window)."""
    with FakeSlack() as slack, live_server(settings) as api:
        app = app_mode(database_url, home, slack)
        assert run_demo(app, api) == 0
        (window,) = db.execute("SELECT window_end FROM anomalies").fetchone()
        book, cleared = load_rules(), 0
        with psycopg.connect(database_url) as conn:
            for _ in range(24):  # the 30-minute measures still hold the spike for a while
                metrics_sql.roll_up(conn, window, window + WINDOW)
                cleared = evaluate_range(
                    conn, book, window, window + WINDOW, "medium", now=window + WINDOW
                ).cleared
                conn.commit()
                window += WINDOW
                if cleared:
                    break
        assert cleared == 1
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert deliver(conn, config.destination(app)) == {"sent": 1}
    (message,) = slack.top_level()
    assert message["blocks"][0]["text"]["text"].endswith("· open · cleared")
    (reply,) = slack.thread(message["ts"])
    assert reply["text"].startswith(":large_green_circle: Condition cleared at ")
