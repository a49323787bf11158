"""Real PostgreSQL for every test: the machine's server when DATABASE_URL is set, else the
project's embedded server. Each session gets a fresh database built from the migrations.

DATABASE_URL is the only thing the suite takes from the machine. Every other SentinelOps, Stripe,
Slack and OpenAI variable, and ./.env, configures the developer's own stack: the session removes
them before any test module is imported, so tests see the defaults they build on."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from psycopg import sql
from starlette.types import ASGIApp

from sentinelops import embedded
from sentinelops.db import migrate
from sentinelops.postgres import with_database
from sentinelops.settings import Settings, get_settings
from tests.support import SECRET, TOKEN
from webhook_service.main import create_app

ROOT = Path(__file__).resolve().parents[1]
# Read by Settings (their aliases) or by the client libraries themselves (OPENAI_ORG_ID, say).
MACHINE_PREFIXES = ("SENTINELOPS_", "STRIPE_", "SLACK_", "OPENAI_")
_ISOLATION = pytest.StashKey[pytest.MonkeyPatch]()


def pytest_configure(config: pytest.Config) -> None:
    """Make the session immune to the developer's environment and ./.env (see the docstring).

    Runs once the initial conftests are imported and before any test module is: modules that
    read the settings at import (the partitions' start) read them after this."""
    if get_settings.cache_info().misses:
        raise pytest.UsageError(
            "get_settings() was called before the session cleared the environment (while a"
            " conftest or plugin was imported): import that module where a test needs it"
        )
    isolation = pytest.MonkeyPatch()
    for name in list(os.environ):
        # Settings match names in any case; only DATABASE_URL, spelt so, picks the server.
        if name != "DATABASE_URL" and (
            name.upper().startswith(MACHINE_PREFIXES) or name.upper() == "DATABASE_URL"
        ):
            isolation.delenv(name)
    isolation.setitem(Settings.model_config, "env_file", None)
    config.stash[_ISOLATION] = isolation


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ISOLATION in config.stash:
        config.stash[_ISOLATION].undo()
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL on the server under test (its `postgres` maintenance database)."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    home = ROOT / ".sentinelops"
    server, owns = embedded.start(home, owner_pid=os.getpid())
    yield server.url("postgres")
    if owns:
        embedded.stop(home)


def _drop(admin: psycopg.Connection, name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"sentinelops_test_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        _drop(admin, name)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        _drop(admin, name)
        _drop(admin, f"{name}_dagster")


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database_url" not in request.fixturenames:
        return
    url = request.getfixturevalue("database_url")
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations'"
            ).fetchall()
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "SENTINELOPS_HOME": str(tmp_path),
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "SENTINELOPS_API_TOKEN": TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The app behind a real uvicorn server in a thread, for truly concurrent requests."""
    with serve(create_app(settings)) as base:
        yield base


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Any ASGI app (the API, or the API wrapped) behind a real uvicorn server in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
