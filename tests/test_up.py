"""`sentinelops up` serves both ports and SIGTERM leaves nothing behind; the embedded server
is adopted after its owner was killed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from sentinelops import embedded

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@pytest.fixture
def home():
    """A SENTINELOPS_HOME outside pytest's 0700 temp root: as root the embedded server runs as
    its own user, which must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="sentinelops-test-"))
    yield path
    embedded.stop(path)
    shutil.rmtree(path, ignore_errors=True)


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for a reaper that is not ours counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_serves_api_and_dagster_and_sigterm_stops_everything(database_url, home):
    api_port, dagster_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "STRIPE_"))}
    env.update(SENTINELOPS_HOME=str(home), SENTINELOPS_API_TOKEN="", STRIPE_WEBHOOK_SECRET="")
    external = "DATABASE_URL" in os.environ
    if external:
        env["DATABASE_URL"] = database_url  # the session's scratch database on that server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sentinelops.cli",
            "up",
            "--api-port",
            str(api_port),
            "--dagster-port",
            str(dagster_port),
        ],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        assert "SentinelOps is up" in "".join(output), "".join(output)
        assert get(f"http://127.0.0.1:{api_port}/api/v1/health") == 200
        assert get(f"http://127.0.0.1:{dagster_port}/server_info") == 200
        # Generated secrets are kept under SENTINELOPS_HOME for `demo` and the operator.
        assert (home / "webhook-secret").read_text().startswith("whsec_")
        assert (home / "api-token").stat().st_mode & 0o077 == 0
        # The file and the banner hold the bare token, which the API accepts; the API is told
        # its holder's name, so anomaly history records `api:local`.
        token = (home / "api-token").read_text().strip()
        assert f"Bearer {token}'" in "".join(output)
        assert get(f"http://127.0.0.1:{api_port}/api/v1/events", token) == 200
        family = psutil.Process(proc.pid).children(recursive=True)
        api = next(p for p in family if "api" in p.cmdline() and "sentinelops.cli" in p.cmdline())
        assert api.environ()["SENTINELOPS_API_TOKEN"] == f"local={token}"
        server = None if external else embedded.status(home)
        assert external or server is not None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    assert [p.pid for p in family if not gone(p.pid)] == []
    if server is not None:
        assert gone(server.pid)
        assert embedded.status(home) is None
        # The embedded server's password is in no output or log of the stack.
        password = (home / "postgres-password").read_text().strip()
        logs = [path.read_text(errors="replace") for path in (home / "logs").iterdir()]
        assert [text for text in ["".join(output), *logs] if password in text] == []


def test_a_server_orphaned_by_a_killed_owner_is_adopted_then_stopped(home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first, owns_first = embedded.start(home, owner_pid=dead.pid)
    try:
        again, owns_again = embedded.start(home, owner_pid=os.getpid())
        assert again.pid == first.pid  # reused, not a second server on the same data
        assert owns_again
        assert embedded.stop(home)
        assert embedded.status(home) is None
        assert gone(first.pid)
    finally:
        embedded.stop(home)


@pytest.mark.parametrize("owner", ["alive", "manual"])
def test_a_server_with_a_live_owner_is_shared_not_taken(home, owner):
    owner_pid = os.getpid() if owner == "alive" else None
    first, _ = embedded.start(home, owner_pid=owner_pid)
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from sentinelops import embedded;"
                "s, owns = embedded.start(Path(sys.argv[1]), owner_pid=12345678);"
                "print(s.pid, owns)",
                str(home),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        assert child.stdout.split() == [str(first.pid), "False"]
    finally:
        embedded.stop(home)
