"""External systems as Dagster resources, resolved at run time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from sentinelops.db import database_url
from sentinelops.settings import get_settings
from sentinelops_pipelines.rules.definitions import RuleBook, load_rules


class PostgresResource(dg.ConfigurableResource):
    """The SentinelOps database. Unset URL: found exactly as the `sentinelops` command finds it
    (DATABASE_URL, else the embedded server recorded under SENTINELOPS_HOME)."""

    database_url: str | None = None

    def url(self) -> str:
        return self.database_url or database_url(get_settings())

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with psycopg.connect(
            self.url(), application_name="sentinelops-dagster", connect_timeout=10
        ) as conn:
            yield conn


class RulesResource(dg.ConfigurableResource):
    """The rule book: the packaged rules.toml, or the file SENTINELOPS_RULES_FILE names."""

    path: str | None = None

    def load(self) -> RuleBook:
        return load_rules(self.path or get_settings().rules_file)
