"""The early looks' sensor: the 5-minute window still open judged once a minute (looks.py).

A look is not a run: a run per minute would cost 15-40 s of launching each (more than the
minute it saves) and grow the run storage by 1,440 runs a day. The sensor makes the look in the
code server, in one short transaction, posts what it opened at once, and reports the look as
an observation of the `anomalies` asset with its numbers, so the Dagster UI shows every look
beside the runs that judged the closed windows. The housekeeping job prunes observations
older than a week (storage/retention.py).

The cursor holds the last (window, minute) looked at, so a window gets at most one look per
minute, four in all: the number its false-alarm budget was split for.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import psycopg

from sentinelops.settings import get_settings
from sentinelops.windows import window_floor, window_key
from sentinelops_pipelines.assets.rules import anomalies
from sentinelops_pipelines.looks import described, look, look_minutes
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.slack import SlackResource, deliver_found

LOOK_EVERY_SECONDS = 60
# A rules run (a backfill, a catch-up) may hold an incident's lock for minutes: a look waits a
# few seconds at most, then gives way, so it never piles up behind it nor holds the window's
# rollup row that run will need (and a tick stays far inside Dagster's 60 s sensor timeout).
LIMITS = (
    "SELECT set_config('lock_timeout', '5s', true), set_config('statement_timeout', '20s', true)"
)


def database_now(conn: psycopg.Connection) -> datetime:
    """The clock looks go by: the database's, the one `received_at` is stamped with."""
    return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]


@dg.sensor(
    minimum_interval_seconds=LOOK_EVERY_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Judge the 5-minute window still open once a minute, for the rules with early "
    "looks (payment failure spikes, webhook integrity), and post what it finds at once.",
)
def open_window_sensor(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    rules: RulesResource,
    slack: SlackResource,
) -> dg.SensorResult:
    book = rules.load()
    with postgres.connect() as conn:
        conn.execute(LIMITS)
        now = database_now(conn)
        key = f"{window_key(window_floor(now))}/{look_minutes(now)}"
        if context.cursor == key:
            return dg.SensorResult(skip_reason=f"already looked at {key}")
        try:
            found = look(conn, book, now, get_settings().alert_min_severity)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
            conn.rollback()  # the next tick looks again; the closed window is judged anyway
            return dg.SensorResult(skip_reason=f"look at {key} skipped: {type(exc).__name__} "
                                   "(a rules run holds the window or its incident)")  # fmt: skip
    if found is None:
        return dg.SensorResult(skip_reason=f"nothing to look at in {key} (first minute, or no "
                               "rule with early looks)")  # fmt: skip
    posted = deliver_found(postgres.url(), slack, found.announced, context.log)
    if found.announced:
        context.log.info("early look at %s: %s; posted: %s", key, dict(found.by_rule),
                         dict(posted))  # fmt: skip
    observation = dg.AssetObservation(
        asset_key=anomalies.key,
        description=f"Early look at the open window {key} (minute {found.minutes} of 5)",
        metadata={**described(found), "alerts_posted": posted["sent"]},
    )
    return dg.SensorResult(asset_events=[observation], cursor=key)
