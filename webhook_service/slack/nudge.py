"""After a transition commits, its Slack message is updated at once instead of at the next
Dagster alerts run.

Best effort by design: the change was queued in the outbox in the transaction that made it
(repository.set_status), so a nudge that fails (Slack down, the database busy, the process
stopped) leaves the row pending and the alerts job delivers it later. Its failure is only logged.
"""

from __future__ import annotations

import logging

import anyio
import psycopg

from sentinelops.db import database_url
from sentinelops.settings import Settings
from sentinelops.slack import config
from sentinelops.slack.delivery import Destination, deliver
from sentinelops.slack.result import Policy

log = logging.getLogger(__name__)
# Shorter than the alerts job's: a person just pressed a button and the next run is the fallback.
POLICY = Policy(timeout_seconds=5.0)
CONNECT_TIMEOUT_SECONDS = 3


async def nudge(settings: Settings, anomaly_id: int) -> None:
    """Deliver this anomaly's pending Slack rows now; never raises. Run it after the response
    (a background task): delivery calls Slack, which can take seconds."""
    try:
        destination = config.destination(settings, POLICY)
    except Exception:  # a setting Slack cannot use: the alerts job reports it
        log.warning("Slack update of anomaly %s not attempted: invalid Slack settings", anomaly_id)
        return
    if destination is None:  # Slack is off: nothing to update
        return
    try:
        # deliver() is synchronous (psycopg and slack_sdk, both blocking): a worker thread, so
        # the event loop keeps serving requests meanwhile.
        await anyio.to_thread.run_sync(_deliver, settings, destination, anomaly_id)
    except Exception as exc:
        # Only the type: a message could carry a URL or a token. The row stays pending.
        log.warning(
            "Slack update of anomaly %s failed (%s); the alerts job delivers it later",
            anomaly_id,
            type(exc).__name__,
        )


def _deliver(settings: Settings, destination: Destination, anomaly_id: int) -> None:
    # Its own short connection, not one of the pool's: deliver() wants a sync autocommit
    # connection and holds it while Slack answers, which the API's pool should not pay for.
    with psycopg.connect(
        database_url(settings),
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="sentinelops-api-slack",
    ) as conn:
        outcomes = deliver(conn, destination, log, anomaly_id=anomaly_id, recover=False)
    if outcomes:
        log.info("Slack update of anomaly %s: %s", anomaly_id, dict(outcomes))
