"""Where the database is, how to reach it, and the migrations that shape it."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sentinelops import embedded
from sentinelops.settings import Settings

log = logging.getLogger(__name__)

# Any constant will do; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 0x5E171E1
REDACTED = "***"


class DatabaseNotConfigured(RuntimeError):
    pass


def database_url(settings: Settings) -> str:
    """DATABASE_URL, else the embedded server recorded under SENTINELOPS_HOME.

    Every process (API, Dagster webserver, daemon, run workers, a plain `dagster asset
    materialize`) resolves the database through this one function.
    """
    if settings.database_url:
        return settings.database_url
    server = embedded.status(settings.sentinelops_home)
    if server is None:
        raise DatabaseNotConfigured(
            f"DATABASE_URL is unset and no embedded server runs under {settings.sentinelops_home};"
            " start one with `uv run sentinelops db start` (or `make run`)"
        )
    return server.url()


def redact_password(url: str) -> str:
    """`url` with its password (embedded server's or DATABASE_URL's) shown as `***`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):  # a `key=value` connection string
        params = conninfo_to_dict(url)
        if not params.get("password"):
            return url
        return make_conninfo(**{**params, "password": REDACTED})  # type: ignore[arg-type]
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if password:
        netloc = f"{user}:{REDACTED}@{hosts}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(k, REDACTED if k == "password" else v) for k, v in pairs], safe="*/")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def with_database(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def dagster_storage_url(url: str) -> str:
    """Dagster's own storage: same server, its own database, as an SQLAlchemy URL.

    dagster-postgres picks psycopg 3 for a plain `postgresql://` URL under SQLAlchemy 2.1 and its
    NOTIFY then fails; naming the psycopg2 driver avoids that. Credentials are re-quoted and
    every other connection parameter (sslmode, sslrootcert, …) is kept as a query parameter.
    """
    params = {k: v for k, v in conninfo_to_dict(url).items() if v is not None}
    user = quote(str(params.pop("user", "")), safe="")
    password = quote(str(params.pop("password", "")), safe="")
    host = params.pop("host", "127.0.0.1")
    port = params.pop("port", "5432")
    dbname = quote(str(params.pop("dbname", "postgres")) + "_dagster", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql+psycopg2://{auth}{host}:{port}/{dbname}{query}"


def ensure_dagster_database(url: str) -> str:
    """Create Dagster's database beside `url`'s if missing; its SQLAlchemy URL."""
    ensure_database(with_database(url, database_name(url) + "_dagster"))
    return dagster_storage_url(url)


def ensure_database(url: str) -> bool:
    """Create the database `url` names if it is missing; True if it was created."""
    name = database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:  # another process won the race
            return False
    return True


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("sentinelops.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def migrate(url: str) -> list[str]:
    """Apply pending migrations in order, in one transaction; returns the names applied.

    An advisory lock makes concurrent callers queue; the loser then sees everything applied.
    A landed migration whose text changed is refused: migrations are never edited.
    """
    applied_now = []
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done: dict[int, str] = dict(
            conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        )
        for migration in migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(f"migration {migration.name} changed after it was applied")
                continue
            conn.execute(migration.text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration.name)
    for name in applied_now:
        log.info("applied migration %s", name)
    return applied_now
