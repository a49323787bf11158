"""The suite ignores the developer's environment and ./.env (tests/conftest.py): what a test
sees does not depend on the machine it runs on, only on the settings it builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sentinelops.settings import Settings, get_settings

HOSTILE_ENVIRONMENT = {
    "SENTINELOPS_PARTITIONS_START": "2030-06-01",
    "SENTINELOPS_ALERT_MIN_SEVERITY": "high",
    "SENTINELOPS_API_TOKEN": "so_from_the_shell",
    "STRIPE_API_KEY": "rk_test_from_the_shell",
    "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/lowercase",  # any case counts
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
}
HOSTILE_ENV_FILE = """\
SENTINELOPS_PARTITIONS_START=2031-01-01
SENTINELOPS_RULES_FILE=/nonexistent/rules.toml
SENTINELOPS_WEBHOOK_TOLERANCE=1
SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/from-dotenv
OPENAI_API_KEY=sk-from-dotenv
DATABASE_URL=postgresql://nobody@127.0.0.1:9/from_dotenv
"""


def test_the_sessions_settings_are_the_defaults(monkeypatch):
    """What get_settings() gives every test (Dagster resources read it at run time) equals
    Settings built from nothing at all; only DATABASE_URL, which picks the server, passes."""
    session = get_settings()
    with monkeypatch.context() as bare:
        for name in list(os.environ):
            bare.delenv(name)
        defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert session.model_dump(exclude={"database_url"}) == defaults.model_dump(
        exclude={"database_url"}
    )
    assert session.database_url == (os.environ.get("DATABASE_URL") or None)


def test_a_hostile_environment_and_env_file_do_not_reach_the_suite(tmp_path):
    """A session started with every setting changed, in the shell and in ./.env, still builds
    the defaults: the test above, run by a pytest of its own in that environment."""
    (tmp_path / ".env").write_text(HOSTILE_ENV_FILE)  # ./.env of the session's working directory
    test = f"{Path(__file__)}::test_the_sessions_settings_are_the_defaults"
    # Without the hypothesis and schemathesis plugins, which this test does not use (they cost a
    # second of start-up); pytest-timeout stays, for the timeout the project configures.
    quick = ["-p", "no:cacheprovider", "-p", "timeout"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", *quick],
        cwd=tmp_path,
        env={**os.environ, **HOSTILE_ENVIRONMENT, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
