"""The daily operations summary: facts from the rollups and anomalies, worded, stored, posted."""

from datetime import date

import dagster as dg

from sentinelops.slack import outbox
from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.partitions import daily_partitions
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import summaries as summary_sql
from sentinelops_pipelines.summary import template
from sentinelops_pipelines.summary.writers import SummaryWriter


def _reuse(stored: dict | None, facts: dict) -> template.Wording | None:
    """The stored wording when the facts have not changed and it is worth keeping: AI wording
    (one AI call per day, however often the day is re-materialized), or whatever wording was
    already posted (the API keeps showing what Slack showed). A deterministic summary that was
    never posted is worded again, so an AI that is back improves it."""
    if stored is None or stored["facts"] != facts:
        return None
    if not (stored["used_ai"] or stored["delivered_at"]):
        return None
    return template.Wording(
        overall=stored["overall"],
        highlights=stored["highlights"],
        watch=stored["watch"],
        used_ai=stored["used_ai"],
        ai_error=stored["ai_error"],
        model=stored["model"],
    )


@dg.asset(
    group_name="reporting",
    partitions_def=daily_partitions,
    deps=[window_metrics, anomalies],
    kinds={"postgres", "slack", "openai"},
)
def daily_summary(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    summary_writer: dg.ResourceParam[SummaryWriter],
    slack: SlackResource,
) -> dg.MaterializeResult:
    """The day's operations summary (payments, failure rate, revenue, refunds, disputes,
    subscriptions, anomalies against the previous day and the 7-day average), posted once."""
    day = date.fromisoformat(context.partition_key)
    with postgres.connect() as conn:
        conn.autocommit = True
        facts = summary_sql.load_facts(conn, day)
        draft = template.compose(facts)
        wording = _reuse(summary_sql.get(conn, day), facts) or summary_writer.write(facts, draft)
        text = template.render_text(day.isoformat(), wording)
        # Stored and queued for Slack together: a run that dies before posting loses nothing,
        # and the alerts delivery retries what Slack did not accept.
        with conn.transaction():
            summary_sql.save(conn, day, facts, wording, text)
            outbox.enqueue_summary(conn, day)
        outcomes = deliver(conn, slack.destination(), context.log, summary_date=day)
        delivered_at = summary_sql.get(conn, day)["delivered_at"]  # type: ignore[index]
    context.log.info("summary for %s: used_ai=%s ai_error=%s", day, wording.used_ai,
                     wording.ai_error)  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "used_ai": wording.used_ai,
            "ai_error": wording.ai_error or "",
            "posted_now": outcomes["sent"],
            "delivered_at": delivered_at.isoformat() if delivered_at else "not yet",
            "payments": facts["metrics"]["payments"]["day"],
            "anomalies_opened": facts["anomalies"]["opened"]["total"],
            "text": dg.MetadataValue.md(f"```\n{text}\n```"),
        }
    )
