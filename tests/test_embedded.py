"""The embedded server lets no client in without its password, upgrades a data directory made
when it trusted every local client without losing its data, and `db url` shows the password
only when asked."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sentinelops import embedded
from sentinelops.db import database_url
from sentinelops.postgres import redact_password
from sentinelops.settings import Settings


def make_home() -> Path:
    """Outside pytest's 0700 temp root: as root the server runs as its own user, which must be
    able to reach its data directory."""
    return Path(tempfile.mkdtemp(prefix="sentinelops-test-"))


@pytest.fixture
def home() -> Iterator[Path]:
    path = make_home()
    yield path
    embedded.stop(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def fresh() -> Iterator[tuple[Path, embedded.RunningServer]]:
    """One server on a new data directory, shared by the tests that only read from it."""
    path = make_home()
    server, _ = embedded.start(path, owner_pid=os.getpid())
    yield path, server
    embedded.stop(path)
    shutil.rmtree(path, ignore_errors=True)


def connect_as_superuser(port: int, password: str) -> psycopg.Connection:
    # No password file: libpq must send exactly `password`, nothing it finds in ~/.pgpass.
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname="postgres",
        password=password,
        passfile=os.path.join(os.devnull, "pgpass"),
    )


def embedded_settings(home: Path) -> Settings:
    return Settings(_env_file=None, DATABASE_URL="", SENTINELOPS_HOME=str(home))  # type: ignore[call-arg]


def init_like_before(home: Path, running: bool) -> None:
    """A data directory as every earlier version made it (`initdb --auth=trust`), with a table."""
    pgdata = home / "postgres"
    pgdata.mkdir(parents=True)
    pgdata.chmod(0o700)
    if os.geteuid() == 0:
        embedded._prepare_for_root(pgdata)
    run = embedded._run_kwargs()
    initdb = [embedded._bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres"]
    subprocess.run(
        [*initdb, "--encoding=UTF8", "--locale=C"], check=True, capture_output=True, **run
    )
    embedded._configure(pgdata)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_ctl = [embedded._bin("pg_ctl"), "-D", str(pgdata), "-w"]
    subprocess.run(
        [*pg_ctl, "-l", str(pgdata / "log"), "-o", f"-p {port}", "start"],
        check=True,
        capture_output=True,
        **run,
    )
    with connect_as_superuser(port, "") as conn:  # trust: no password needed
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        conn.commit()
    if not running:
        subprocess.run([*pg_ctl, "stop"], check=True, capture_output=True, **run)


class TestNewDataDirectory:
    def test_a_client_without_the_password_is_refused(self, fresh):
        _, server = fresh
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            connect_as_superuser(server.port, "")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect_as_superuser(server.port, "guessed")

    def test_every_process_gets_a_url_that_carries_the_password(self, fresh):
        home, server = fresh
        url = database_url(embedded_settings(home))
        assert url == server.url()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "postgres",
                "sentinelops",
            )

    def test_the_password_is_readable_only_by_its_owner_and_initdb_leaves_no_copy(self, fresh):
        home, _ = fresh
        stored = (home / "postgres-password").stat()
        assert stored.st_mode & 0o777 == 0o600
        assert stored.st_uid == os.geteuid()
        assert [p.name for p in home.iterdir() if "initdb" in p.name] == []


@pytest.mark.parametrize(
    "running", [True, False], ids=["old-server-still-running-is-adopted", "old-server-stopped"]
)
def test_a_trusting_data_directory_is_upgraded_on_start_and_keeps_its_data(home, running):
    init_like_before(home, running)

    server, _ = embedded.start(home, owner_pid=os.getpid())

    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        connect_as_superuser(server.port, "")
    with psycopg.connect(server.url("postgres")) as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    assert (home / "postgres-password").stat().st_mode & 0o777 == 0o600
    # Restarting an upgraded directory changes nothing: same password, same data.
    password = server.password
    embedded.stop(home)
    again, _ = embedded.start(home, owner_pid=os.getpid())
    assert again.password == password
    with connect_as_superuser(again.port, password or "") as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)


def test_an_upgrade_interrupted_after_storing_the_password_finishes_with_it(home):
    """The password file is written before the role's password is set; a crash in between
    leaves a trusting server and a stored password, which the next start must use."""
    init_like_before(home, running=False)
    (home / "postgres-password").write_text("stored-before-the-crash\n")

    server, _ = embedded.start(home, owner_pid=os.getpid())

    with connect_as_superuser(server.port, "stored-before-the-crash") as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        connect_as_superuser(server.port, "")


def sentinelops(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PG"))}
    env["SENTINELOPS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "sentinelops.cli", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_db_url_and_db_start_redact_the_password_unless_asked(fresh):
    home, server = fresh
    redacted = f"postgresql://postgres:***@127.0.0.1:{server.port}/sentinelops"
    assert sentinelops(home, "db", "url") == redacted
    assert sentinelops(home, "db", "start") == redacted  # already running: adopted, not restarted
    shown = sentinelops(home, "db", "url", "--show-password")
    assert shown == server.url()
    with psycopg.connect(shown) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "postgresql://postgres:a%2Fb@127.0.0.1:54329/sentinelops",
            "postgresql://postgres:***@127.0.0.1:54329/sentinelops",
            id="embedded-url-quoted-password",
        ),
        pytest.param(
            "postgresql://app:pw@db.internal:5432/so?sslmode=verify-full&password=also",
            "postgresql://app:***@db.internal:5432/so?sslmode=verify-full&password=***",
            id="password-in-query-too",
        ),
        pytest.param(
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/postgres",
            id="no-password-unchanged",
        ),
        pytest.param(
            "host=db user=app password=secret dbname=so",
            "user=app password=*** dbname=so host=db",
            id="key-value-connection-string",
        ),
    ],
)
def test_redact_password(url, shown):
    assert redact_password(url) == shown
