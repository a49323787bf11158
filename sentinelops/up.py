"""`sentinelops up`: the whole local stack, supervised; SIGTERM or Ctrl-C stops all of it."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sentinelops import db, embedded, local_secrets, postgres
from sentinelops.settings import Settings

log = logging.getLogger("sentinelops.up")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_PATH = "/api/v1/webhooks/stripe"
INTERACTIONS_PATH = "/api/v1/slack/interactions"
STOP_GRACE_SECONDS = 15
# The holder's name of the token `up` generates: anomaly history shows its changes as `api:local`.
GENERATED_HOLDER = "local"
# The code location of workspace.yaml, under the name Dagster gives it there (sensor and schedule
# state, run history and UI links are keyed by it).
CODE_LOCATION = "sentinelops_pipelines.definitions:defs"


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _local_secret(path: Path, prefix: str) -> str:
    """A generated secret kept under SENTINELOPS_HOME (0600), reused on the next start."""
    return local_secrets.read_or_create(path, lambda: local_secrets.generate_token(prefix))


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `up` itself is killed (SIGKILL cannot be trapped)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _start(name: str, argv: list[str], env: dict[str, str], logdir: Path) -> subprocess.Popen:
    # Appended to across starts. The child writes through its own copy of the descriptor, closed
    # when it exits; this handle is never closed explicitly: CPython drops it when _start returns.
    logfile = open(logdir / f"{name}.log", "ab")  # noqa: SIM115
    # Own process group: Dagster's webserver and daemon start children of their own, and a
    # process group is the one handle that stops all of them.
    proc = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    return proc


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM; killing it", name)
    for proc in procs.values():
        # Kill whatever is left in each group, the leader's grandchildren included.
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _end_orphaned_runs(env: dict[str, str]) -> None:
    """Fail the runs a killed stack left in progress, before Dagster starts again.

    Safe only now: this stack's webserver and daemon are not running yet, so no run worker of
    it can be alive. (A second stack on the same database would lose its runs to this; run
    one per database.) A subprocess, because this core package does not import Dagster.
    """
    argv = [sys.executable, "-m", "sentinelops_pipelines.orphans"]
    try:
        done = subprocess.run(
            argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        log.warning("checking for orphaned Dagster runs timed out; continuing")
        return
    for line in done.stdout.splitlines():
        log.info("orphaned Dagster run: %s", line)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        log.warning(
            "checking for orphaned Dagster runs failed (exit %s); continuing:\n%s",
            done.returncode,
            "\n".join(tail),
        )


def _wait_ready(url: str, procs: dict[str, subprocess.Popen], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback URL
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _wait_socket(path: Path, procs: dict[str, subprocess.Popen], timeout: float = 120) -> bool:
    """Until the code server accepts connections (it listens once the code is loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return True
            except OSError:
                time.sleep(0.2)
    return False


def _code_server_workspace(dagster_home: Path, socket_path: Path) -> Path:
    """A workspace file pointing the webserver and the daemon at the one code server."""
    server = {"host": "localhost", "socket": str(socket_path), "location_name": CODE_LOCATION}
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(json.dumps({"load_from": [{"grpc_server": server}]}))  # JSON is YAML
    return workspace


def run_stack(settings: Settings, api_port: int = 8000, dagster_port: int = 3000) -> int:
    home = settings.sentinelops_home
    home.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    owns_db = False
    procs: dict[str, subprocess.Popen] = {}
    # Private (0700) and short: a Unix socket's path is limited to 107 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="sentinelops-grpc-"))
    try:
        if settings.database_url:
            url = settings.database_url
        else:
            server, owns_db = embedded.start(home, owner_pid=os.getpid())
            url = server.url()
        applied = db.migrate(url)
        log.info("migrations: %s", ", ".join(applied) or "up to date")
        postgres.ensure_dagster_database(url)
        dagster_home = home / "dagster"
        dagster_home.mkdir(exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")

        webhook_secret = ",".join(settings.webhook_secret_values) or _local_secret(
            home / "webhook-secret", "whsec_"
        )
        if settings.api_tokens:  # as configured, holders' names included
            api_token = ""
            api_tokens = ",".join(token.get_secret_value() for token in settings.api_tokens)
        else:
            # The file keeps the bare token, what a client sends; the API learns its holder's name.
            api_token = _local_secret(home / "api-token", "so_")
            api_tokens = f"{GENERATED_HOLDER}={api_token}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SENTINELOPS_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "SENTINELOPS_API_TOKEN": api_tokens,
            # The console links into the Dagster UI this command starts, whatever its port.
            "SENTINELOPS_DAGSTER_URL": settings.dagster_url
            if "dagster_url" in settings.model_fields_set
            else f"http://127.0.0.1:{dagster_port}",
            # Slack messages link into the console this command starts, whatever its port.
            "SENTINELOPS_CONSOLE_URL": settings.console_url
            if "console_url" in settings.model_fields_set
            else f"http://127.0.0.1:{api_port}/console",
        }
        bindir = Path(sys.executable).parent
        logdir = home / "logs"
        logdir.mkdir(exist_ok=True)
        # One code server for the webserver and the daemon, as `dagster dev` runs them. With the
        # repo's workspace.yaml each starts its own, and the daemon replaces its one every 60 s
        # (Dagster's reload interval for a code location it manages): ~7 CPU-seconds of
        # imports each time, the larger part of the idle stack's CPU. The UI's "Reload" still
        # reloads the code (the proxy restarts its server); the daemon sees it within 60 s.
        socket_path = socket_dir / "code.sock"
        code_server = [
            str(bindir / "dagster"),
            "code-server",
            "start",
            "--socket",
            str(socket_path),
            "--location-name",
            CODE_LOCATION,
            "-m",
            "sentinelops_pipelines.definitions",
            "-a",
            "defs",
            "-d",
            str(PROJECT_ROOT),
            "--log-level",
            "warning",
        ]
        workspace = str(_code_server_workspace(dagster_home, socket_path))
        commands = {
            "api": [
                sys.executable,
                "-m",
                "sentinelops.cli",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
            ],
            "dagster-webserver": [
                str(bindir / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster_port),
                "-w",
                workspace,
            ],
            "dagster-daemon": [str(bindir / "dagster-daemon"), "run", "-w", workspace],
        }
        _end_orphaned_runs(env)
        procs["code-server"] = _start("code-server", code_server, env, logdir)
        if not _wait_socket(socket_path, procs):
            log.error("the Dagster code server did not come up; logs are in %s", logdir)
            return 1
        for name, argv in commands.items():
            procs[name] = _start(name, argv, env, logdir)
        api_url = f"http://127.0.0.1:{api_port}"
        ready = _wait_ready(f"{api_url}/api/v1/health", procs) and _wait_ready(
            f"http://127.0.0.1:{dagster_port}/server_info", procs
        )
        if not ready:
            log.error("the stack did not come up; logs are in %s", logdir)
            return 1
        _banner(settings, api_url, dagster_port, url, webhook_secret, api_token, logdir)
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log.error(
                        "%s exited with %s; stopping everything (logs in %s)",
                        name,
                        proc.returncode,
                        logdir,
                    )
                    return 1
            time.sleep(0.5)
    except _Stop as stop:
        log.info("%s received; stopping", stop)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_all(procs)
        shutil.rmtree(socket_dir, ignore_errors=True)
        if owns_db:
            embedded.stop(home)
            log.info("embedded PostgreSQL stopped")


def slack_mode(settings: Settings, api_url: str) -> str:
    """How alerts reach Slack, and how its buttons reach the API."""
    if settings.slack_app_mode:
        if settings.slack_app_token is not None:
            buttons = "buttons over Socket Mode (SLACK_APP_TOKEN)"
        elif settings.slack_signing_secret is not None:
            buttons = f"buttons over HTTP: POST {api_url}{INTERACTIONS_PATH}"
        else:
            buttons = "no buttons (set SLACK_APP_TOKEN or SLACK_SIGNING_SECRET)"
        return f"app mode, channel {settings.slack_channel_id}; {buttons}"
    if settings.slack_webhook_url is not None:
        return "webhook mode (SLACK_WEBHOOK_URL): alerts only, no buttons"
    return "off (alerts stay pending; set SLACK_BOT_TOKEN and SLACK_CHANNEL_ID)"


def _banner(
    settings: Settings,
    api_url: str,
    dagster_port: int,
    url: str,
    webhook_secret: str,
    api_token: str,
    logdir: Path,
) -> None:
    where = "external (DATABASE_URL)" if settings.database_url else "embedded"
    name = postgres.database_name(url)
    generated_secret = not settings.webhook_secret_values
    generated_token = not settings.api_token_values
    lines = [
        "",
        "SentinelOps is up",
        f"  Console    {api_url}/console   (sign in with the API token)",
        f"  API        {api_url}   (OpenAPI: {api_url}/docs)",
        f"  Dagster UI http://127.0.0.1:{dagster_port}",
        f"  Database   {where}, {name} on the server of `sentinelops db url`",
        f"  Logs       {logdir}",
        f"  Webhook    {api_url}{WEBHOOK_PATH}",
        f"  Slack      {slack_mode(settings, api_url)}",
    ]
    if generated_secret:
        lines += [
            f"  Webhook secret (generated, {settings.sentinelops_home / 'webhook-secret'}):",
            f"    {webhook_secret}",
            "  Forward real test-mode events with the Stripe CLI:",
            f"    stripe listen --forward-to {api_url}{WEBHOOK_PATH}",
            "    then restart with STRIPE_WEBHOOK_SECRET set to the whsec_ it prints",
        ]
    if generated_token:
        lines += [
            f"  API token (generated, {settings.sentinelops_home / 'api-token'}):",
            f"    {api_token}",
            f"    curl -H 'Authorization: Bearer {api_token}' {api_url}/api/v1/events",
        ]
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)
