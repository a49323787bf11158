"""Dagster's storage URL keeps what the operator's DATABASE_URL says."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from sentinelops.postgres import dagster_storage_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("postgresql://postgres@127.0.0.1:5432/test",
                     "postgresql+psycopg2://postgres@127.0.0.1:5432/test_dagster", id="plain"),
        pytest.param("postgresql://app:p%40ss%2Fw@db.internal:6432/sentinelops?sslmode=require",
                     "postgresql+psycopg2://app:p%40ss%2Fw@db.internal:6432/sentinelops_dagster"
                     "?sslmode=require", id="quoted password and sslmode survive"),
    ],
)  # fmt: skip
def test_dagster_storage_url(given, expected):
    url = dagster_storage_url(given)
    assert url == expected
    parsed = make_url(url)
    assert parsed.password in (None, "p@ss/w")
