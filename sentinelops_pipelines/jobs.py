"""Jobs: the named selections that schedules, sensors and people launch, one per group, and the
rules backtest people launch from the Launchpad."""

# No `from __future__ import annotations`: Dagster reads the op's config class from its
# annotation at definition time.
from typing import Any

import dagster as dg
from pydantic import Field

from sentinelops.settings import get_settings
from sentinelops_pipelines import backtest
from sentinelops_pipelines.housekeeping import (
    prune_look_observations,
    prune_rule_readings,
    prune_slack_interactions,
    prune_webhook_rejections,
)
from sentinelops_pipelines.partitions import daily_partitions, five_minute_partitions
from sentinelops_pipelines.resources import PostgresResource, RulesResource


def group_job(
    name: str, group: str, description: str, **options: Any
) -> "dg.UnresolvedAssetJobDefinition":  # not exported at run time, only for typing
    """A job that materializes one asset group (partitions, tags: `options`)."""
    return dg.define_asset_job(
        name, selection=dg.AssetSelection.groups(group), description=description, **options
    )


rules_job = group_job(
    "rules_job",
    "rules",
    "Roll up a range of 5-minute windows and evaluate every enabled rule over it.",
    partitions_def=five_minute_partitions,
)
alerts_job = group_job("alerts_job", "alerts", "Post every due Slack notification once.")
daily_summary_job = group_job(
    "daily_summary_job",
    "reporting",
    "Build, store and post one day's operations summary.",
    partitions_def=daily_partitions,
)
reconciliation_job = group_job(
    "reconciliation_job",
    "reconciliation",
    "List Stripe's Events API, store what the webhook missed, raise webhook gaps.",
    # A run queue can hold every reconciliation run, scheduled or launched by hand, to one.
    tags={"sentinelops/job": "reconciliation"},
)


@dg.job(
    description="Prune what is kept only for a while (rejected webhook attempts, rule readings, "
    "Slack presses, early-look observations)."
)
def housekeeping_job() -> None:
    prune_webhook_rejections()
    prune_rule_readings()
    prune_slack_interactions()
    prune_look_observations()


class BacktestConfig(dg.Config):
    """The candidate rules (a file on the code server, or the TOML pasted in) and the range."""

    rules_file: str | None = Field(default=None, description="path of the candidate rules file")
    rules_toml: str | None = Field(default=None, description="or the candidate rules as TOML")
    since: str | None = Field(
        default=None, description="YYYY-MM-DD or ISO date and time, UTC; default: until - 30 days"
    )
    until: str | None = Field(
        default=None, description="exclusive; default: now, down to its 5-minute window"
    )


@dg.op(description="A candidate rule book against the active one over the stored rollups.")
def backtest_rules(
    context: dg.OpExecutionContext,
    config: BacktestConfig,
    postgres: PostgresResource,
    rules: RulesResource,
) -> dg.Output[dict[str, Any]]:
    try:
        if (config.rules_file is None) == (config.rules_toml is None):
            raise backtest.BacktestError("give the candidate as rules_file or rules_toml (one)")
        candidate = (
            backtest.load_book(config.rules_file)
            if config.rules_file is not None
            else backtest.load_book_text(config.rules_toml or "")
        )
        since, until = backtest.resolve_range(config.since, config.until)
        current = rules.load()
    except ValueError as exc:  # BacktestError, or the active rules file invalid
        raise dg.Failure(description=str(exc)) from exc
    with postgres.connect() as conn:
        report = backtest.run_backtest(
            conn, current, candidate, since, until,
            current_label=rules.path or get_settings().rules_file or "the packaged rules.toml",
            candidate_label=config.rules_file or "rules_toml",
        )  # fmt: skip
    context.log.info("\n" + backtest.render_text(report))
    changes = report.changes()
    return dg.Output(
        report.to_json(),
        metadata={
            "table": dg.MetadataValue.md(backtest.render_markdown(report.rows)),
            "range": f"{since.isoformat()} .. {until.isoformat()}",
            "windows": report.windows,
            "new": sum(d.verdict == "new" for d in changes),
            "gone": sum(d.verdict == "gone" for d in changes),
            "changed": sum(d.verdict == "changed" for d in changes),
            "seconds": round(report.seconds, 2),
        },
    )


@dg.job(
    name="rules_backtest",
    description="Evaluate a candidate rules file over the stored rollups, writing nothing: per"
    " rule and day, what the active rules raise, what the candidate would, and the difference.",
)
def rules_backtest_job() -> None:
    backtest_rules()
