"""The rules backtest: a candidate rules file against the active one over the stored rollups,
written nowhere. Shared by `sentinelops rules backtest` and the `rules_backtest` Dagster job."""

from sentinelops_pipelines.backtest.incidents import Difference, Incident, compare, group_incidents
from sentinelops_pipelines.backtest.report import Report, Row, render_markdown, render_text
from sentinelops_pipelines.backtest.run import (
    BacktestError,
    load_book,
    load_book_text,
    resolve_range,
    run_backtest,
)

__all__ = [
    "BacktestError",
    "Difference",
    "Incident",
    "Report",
    "Row",
    "compare",
    "group_incidents",
    "load_book",
    "load_book_text",
    "render_markdown",
    "render_text",
    "resolve_range",
    "run_backtest",
]
