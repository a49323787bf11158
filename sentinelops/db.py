"""Where the database is, how to reach it, and the migrations that shape it."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from sentinelops import embedded
from sentinelops.settings import Settings

log = logging.getLogger(__name__)

# Any constant will do; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 0x5E171E1


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
