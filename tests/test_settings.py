"""Settings refuse what must never run: placeholders copied from .env.example, a partitions start
that is not a date, a token holder named twice; and saying so never shows the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sentinelops.settings import Settings

PLACEHOLDERS = [
    pytest.param("DATABASE_URL", "postgresql://sentinelops:change_me@db.internal:5432/s",
                 id="database password"),
    pytest.param("STRIPE_WEBHOOK_SECRET", "whsec_live,whsec_change_me", id="second webhook secret"),
    pytest.param("STRIPE_API_KEY", "rk_live_change_me", id="stripe key"),
    pytest.param("STRIPE_API_BASE", "https://change_me.example", id="stripe base url"),
    pytest.param("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/change_me", id="slack url"),
    pytest.param("SLACK_BOT_TOKEN", "xoxb-change_me", id="slack bot token"),
    pytest.param("SLACK_SIGNING_SECRET", "change_me", id="slack signing secret"),
    pytest.param("SLACK_APP_TOKEN", "xapp-change_me", id="slack app token"),
    pytest.param("OPENAI_API_KEY", "sk-change_me", id="openai key"),
    pytest.param("OPENAI_BASE_URL", "https://change_me/v1", id="openai base url"),
    pytest.param("SENTINELOPS_API_TOKEN", "alice=change_me", id="named api token"),
    pytest.param("SENTINELOPS_SESSION_KEY", "CHANGE_ME", id="session key, any case"),
]  # fmt: skip


def settings_error(env: dict[str, str], cwd: Path) -> str:
    """What `sentinelops` prints when started with `env` in `cwd` (no `.env` of the developer's);
    its exit status must be 2."""
    result = subprocess.run(
        [sys.executable, "-m", "sentinelops.cli", "db", "url"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


class TestRefused:
    @pytest.mark.parametrize(("name", "value"), PLACEHOLDERS)
    def test_a_placeholder_is_refused_in_every_secret_and_url(self, name, value):
        with pytest.raises(ValueError, match="placeholder from .env.example"):
            Settings(_env_file=None, **{name: value})  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            pytest.param({"SLACK_BOT_TOKEN": "xoxb-1"}, "set together", id="token, no channel"),
            pytest.param({"SLACK_CHANNEL_ID": "C1"}, "set together", id="channel, no token"),
            pytest.param({"SLACK_APP_TOKEN": "xoxb-1"}, "app-level token", id="bot as app token"),
        ],
    )
    def test_half_a_slack_app_is_refused_at_start(self, env, message):
        with pytest.raises(ValueError, match=message):
            Settings(_env_file=None, **env)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["2026-13-01", "20260101", "2026-W01-1", "next monday", ""])
    def test_partitions_start_must_be_a_date(self, value):
        with pytest.raises(ValueError, match="must be a date like 2026-01-01"):
            Settings(_env_file=None, SENTINELOPS_PARTITIONS_START=value)  # type: ignore[call-arg]

    def test_the_command_stops_at_start_with_one_line_that_names_but_never_shows_secrets(
        self, tmp_path
    ):
        stderr = settings_error(
            {
                "SENTINELOPS_API_TOKEN": "alice=so_first_secret,alice=so_second_secret",
                "SENTINELOPS_PARTITIONS_START": "2026-1-1",
            },
            tmp_path,
        )
        assert "SENTINELOPS_API_TOKEN: names a token holder twice: alice" in stderr
        assert "SENTINELOPS_PARTITIONS_START: must be a date like 2026-01-01" in stderr
        assert "so_first_secret" not in stderr and "so_second_secret" not in stderr


class TestApiTokens:
    @pytest.mark.parametrize(
        ("value", "entries"),
        [
            pytest.param("so_abc", [(None, "so_abc")], id="bare token"),
            pytest.param("alice=so_a,ci=so_c", [("alice", "so_a"), ("ci", "so_c")], id="named"),
            pytest.param("abc==", [(None, "abc==")], id="base64 padding is not a name"),
            pytest.param(" bob=so_b , so_x ", [("bob", "so_b"), (None, "so_x")], id="mixed"),
            pytest.param("9lives=so_9", [(None, "9lives=so_9")], id="a name starts with a letter"),
        ],
    )
    def test_entries(self, value, entries):
        settings = Settings(_env_file=None, SENTINELOPS_API_TOKEN=value)  # type: ignore[call-arg]
        assert settings.api_token_entries == entries
        assert settings.api_token_values == [token for _, token in entries]


def test_env_example_lists_every_setting():
    listed = (Path(__file__).parents[1] / ".env.example").read_text()
    missing = [
        field.alias
        for field in Settings.model_fields.values()
        if field.alias and f"# {field.alias}=" not in listed
    ]
    assert missing == []
