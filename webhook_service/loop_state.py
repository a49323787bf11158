"""The loop's own state, for health and /metrics: coverage, the Slack backlog, reconciliation.

A monitor that stops evaluating, or whose alerts stop going out, must say so itself: these are
the figures that tell, read with the same SQL the pipelines act on (sentinelops/coverage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import AsyncConnection

from sentinelops import coverage
from sentinelops.settings import Settings

SCAN_TIMEOUT_MS = 1500  # inside health's own 2 s
WATERMARK_LIMIT = timedelta(hours=2)

NOTIFICATIONS = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')) AS oldest
  FROM notifications WHERE status IN ('pending', 'failed')
"""

WATERMARK = "SELECT extract(epoch FROM now() - listed_until) FROM reconciliation_state"


@dataclass
class LoopState:
    coverage: coverage.Coverage
    notifications_pending: int
    notifications_failed: int
    oldest_pending_seconds: float | None
    watermark_age_seconds: float | None  # None: STRIPE_API_KEY unset, or nothing listed yet
    coverage_unknown: bool = False  # the scan ran out of time

    @property
    def reasons(self) -> list[str]:
        """Why the loop is degraded; empty when it is ok."""
        found = []
        if self.coverage_unknown:
            found.append("coverage scan timed out: a large backlog is waiting to be evaluated")
        found += self.coverage.behind()
        if self.notifications_failed:
            found.append(
                f"{self.notifications_failed} notification(s) failed for good:"
                " check SLACK_WEBHOOK_URL"
            )
        age = self.watermark_age_seconds
        if age is not None and age > WATERMARK_LIMIT.total_seconds():
            found.append(f"reconciliation watermark {age / 3600:.1f} h old, over 2 h")
        return found

    @property
    def status(self) -> str:
        return "degraded" if self.reasons else "ok"


async def _coverage(conn: AsyncConnection, settings: Settings) -> coverage.Coverage | None:
    """The coverage scan, bounded: while a large imported history waits for its catch-up run
    the scan reads every event of it (benchmarks/coverage.py), and health must still answer."""
    now = datetime.now(UTC)
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = {SCAN_TIMEOUT_MS}")
            cur = await conn.execute(
                coverage.SCAN, coverage.params(now, settings.partitions_start_at)
            )
            row = await cur.fetchone()
    except psycopg.errors.QueryCanceled:
        return None
    assert row is not None
    return coverage.from_row(now, row)


async def read(conn: AsyncConnection, settings: Settings) -> LoopState:
    covered = await _coverage(conn, settings)
    cur = await conn.execute(NOTIFICATIONS)
    pending, failed, oldest = await cur.fetchone() or (0, 0, None)
    watermark = None
    if settings.stripe_api_key is not None:
        cur = await conn.execute(WATERMARK)
        found = await cur.fetchone()
        watermark = float(found[0]) if found else None
    return LoopState(
        coverage=covered or coverage.Coverage(datetime.now(UTC), [], None),
        coverage_unknown=covered is None,
        notifications_pending=int(pending),
        notifications_failed=int(failed),
        oldest_pending_seconds=float(oldest) if oldest is not None else None,
        watermark_age_seconds=watermark,
    )
