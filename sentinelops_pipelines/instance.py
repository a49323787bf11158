"""Dagster's own storage, found exactly as every `sentinelops` process finds its database.

`dagster.yaml` names this class instead of a URL, so the webserver, the daemon, run workers
and a plain `dagster asset materialize` from the checkout (which reads ./dagster.yaml when
DAGSTER_HOME is unset) all use `<database>_dagster` on the SentinelOps server: DATABASE_URL,
else the embedded server recorded under SENTINELOPS_HOME.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_postgres import DagsterPostgresStorage

from sentinelops.db import database_url
from sentinelops.postgres import ensure_dagster_database
from sentinelops.settings import get_settings

EVENT_BATCH_SIZE = 500


class SentinelOpsDagsterStorage(DagsterPostgresStorage):
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
        url = config_value.get("postgres_url") or ensure_dagster_database(
            database_url(get_settings())
        )
        return cls(postgres_url=url, inst_data=inst_data)
