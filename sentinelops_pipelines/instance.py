"""Dagster's own storage, found exactly as every `sentinelops` process finds its database.

`dagster.yaml` names this class instead of a URL, so the webserver, the daemon, run workers
and a plain `dagster asset materialize` from the checkout (which reads ./dagster.yaml when
DAGSTER_HOME is unset) all use `<database>_dagster` on the SentinelOps server: DATABASE_URL,
else the embedded server recorded under SENTINELOPS_HOME.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dagster as dg
import sqlalchemy
from dagster_postgres import DagsterPostgresStorage

from sentinelops.db import database_url
from sentinelops.postgres import ensure_dagster_database
from sentinelops.settings import get_settings

EVENT_BATCH_SIZE = 500
# Connections each process keeps open to Dagster's database, shared by its storages and by every
# DagsterInstance it makes; more are opened under load (POOL_OVERFLOW) and closed when returned.
POOL_SIZE = 4
POOL_OVERFLOW = 16
# Dagster's own engines open a connection per query (NullPool): ~9 a second at idle from the
# daemon and the code server, each a PostgreSQL backend forked and a SCRAM exchange on both
# sides (~5% of a core for PostgreSQL alone). One pooled engine per process and URL instead.
# A code server makes a DagsterInstance, so a storage, for every sensor tick that reads the
# instance: they share the pool, and only the first of a process checks that the database and
# its tables exist (creating them if not; a connection each, Dagster's, unpooled).
_engines: dict[str, sqlalchemy.engine.Engine] = {}
_checked: dict[str, str] = {}  # SentinelOps URL -> Dagster URL, database made sure of
_lock = threading.Lock()


def _pooled_engine(url: str) -> sqlalchemy.engine.Engine:
    with _lock:
        if url not in _engines:
            _engines[url] = sqlalchemy.create_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=POOL_OVERFLOW,
                # A connection broken by a server restart or a failover is replaced on checkout.
                pool_pre_ping=True,
                pool_recycle=3600,
            )
        return _engines[url]


def _dagster_url(app_url: str) -> str:
    with _lock:
        if app_url not in _checked:
            _checked[app_url] = ensure_dagster_database(app_url)
        return _checked[app_url]


class SentinelOpsDagsterStorage(DagsterPostgresStorage):
    def __init__(
        self, postgres_url: str, should_autocreate_tables: bool = True, inst_data: Any = None
    ) -> None:
        first = postgres_url not in _engines
        super().__init__(postgres_url, should_autocreate_tables and first, inst_data)
        engine = _pooled_engine(postgres_url)
        # Dagster's storages run every query through `self._engine`; the webserver still
        # replaces it with its own pool (optimize_for_webserver), with a statement timeout.
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage._engine = engine  # type: ignore[union-attr]

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"postgres_url": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> SentinelOpsDagsterStorage:
        # A range run logs a planned and a materialization event per 5-minute partition, each
        # its own connection and write: about 60 ms apiece, so 17 minutes for a 30-day range
        # (benchmarks/rules.py). Batching the materializations and logging the plan as one
        # partition subset brings that range to 45 s. Dagster's trade-off: the partitions of a
        # run that fails are not marked failed (the run itself is, and a re-run repairs them).
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
        os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
        url = config_value.get("postgres_url") or _dagster_url(database_url(get_settings()))
        return cls(postgres_url=url, inst_data=inst_data)
