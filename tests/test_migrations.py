"""Migrations build the schema from an empty database, once, even when two processes race."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest
from psycopg import sql

from sentinelops.db import migrate, migrations
from sentinelops.postgres import with_database


@pytest.fixture
def empty_database(server_url):
    name = f"sentinelops_migrations_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_two_concurrent_migrations_apply_everything_exactly_once(empty_database):
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(migrate(empty_database))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [m.name for m in migrations()]
    assert sorted(results, key=len) == [[], every]
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
        recorded = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert {"stripe_events", "webhook_rejections", "schema_migrations"} <= tables
    assert {
        "stripe_events_created_idx",
        "stripe_events_received_at_idx",
        "webhook_rejections_received_at_idx",
    } <= indexes
    assert recorded == len(every)


def test_an_edited_landed_migration_is_refused(empty_database):
    migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        migrate(empty_database)
