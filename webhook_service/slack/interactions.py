"""POST /api/v1/slack/interactions: the Acknowledge / Resolve / Reopen buttons of the app's
messages, verified with SLACK_SIGNING_SECRET and applied as lifecycle transitions.

`handle` is the one core both transports call: this route and Socket Mode (socket_mode.py).
It does the transition only, so Slack gets its answer within its 3 seconds; `follow_up` then
updates the message (nudge) and tells a press that came too late why, off the request path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, BackgroundTasks, Request, Response
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from sentinelops.settings import Settings
from sentinelops.slack.actions import ACTIONS
from sentinelops.slack.incident import BUTTONS, who
from sentinelops.slack.result import SDK_LOG
from webhook_service.anomalies import repository, service
from webhook_service.anomalies.lifecycle import InvalidTransition, Status
from webhook_service.errors import SentinelOpsError
from webhook_service.slack.nudge import nudge

log = logging.getLogger(__name__)
router = APIRouter()
PATH = "/api/v1/slack/interactions"
MAX_ID = 2**63 - 1
EPHEMERAL_TIMEOUT_SECONDS = 5

# The press is recorded in the transaction that applies it, keyed as Slack identifies one
# press: a retry or a Socket Mode redelivery finds its row and changes nothing.
CLAIM = """
INSERT INTO slack_interactions (user_id, action_id, action_ts, anomaly_id, outcome)
VALUES (%(user)s, %(action)s, %(ts)s, %(anomaly)s, %(outcome)s)
ON CONFLICT (user_id, action_id, action_ts) DO NOTHING
RETURNING outcome
"""


class SlackNotConfigured(SentinelOpsError):
    status_code = 503


class InvalidSlackSignature(SentinelOpsError):
    status_code = 401


class InvalidInteraction(SentinelOpsError):
    status_code = 400


@dataclass(frozen=True)
class Press:
    """One button press, as much of the payload as is used."""

    anomaly_id: int
    target: Status
    action_id: str
    action_ts: str
    user_id: str
    user_name: str
    response_url: str | None


@dataclass(frozen=True)
class Outcome:
    result: Literal["applied", "conflict", "duplicate"]
    anomaly_id: int
    # A conflict: what the presser is told (ephemeral: only they see it), and where.
    message: str | None = None
    response_url: str | None = None


def _text(value: Any, field: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise InvalidInteraction(f"payload: {field} is missing or not a string")
    return value


def parse(payload: Any) -> Press:
    """The press a `block_actions` payload holds; InvalidInteraction (400) for anything else."""
    if not isinstance(payload, dict):
        raise InvalidInteraction("payload: not a JSON object")
    if payload.get("type") != "block_actions":
        raise InvalidInteraction("payload: only block_actions (the incident buttons) are handled")
    actions, user = payload.get("actions"), payload.get("user")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise InvalidInteraction("payload: actions must hold exactly one action")
    if not isinstance(user, dict):
        raise InvalidInteraction("payload: user is missing")
    action = actions[0]
    action_id = _text(action.get("action_id"), "action_id")
    if action_id not in ACTIONS:
        raise InvalidInteraction(f"payload: unknown action_id {action_id[:60]!r}")
    value = _text(action.get("value"), "value", 19)
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise InvalidInteraction("payload: value must be an anomaly id")
    user_id = _text(user.get("id"), "user.id", 64)
    name = user.get("name") or user.get("username")
    response_url = payload.get("response_url")
    return Press(
        anomaly_id=int(value),
        target=Status(ACTIONS[action_id]),
        action_id=action_id,
        action_ts=_text(action.get("action_ts"), "action_ts", 64),
        user_id=user_id,
        user_name=name[:200] if isinstance(name, str) and name else user_id,
        response_url=response_url if isinstance(response_url, str) else None,
    )


class _AlreadyHandled(Exception):
    """The press was recorded before: what this delivery applied is rolled back."""


async def _record(conn: AsyncConnection, press: Press, outcome: str) -> bool:
    """Record the press; False when the same press (user, action, action_ts) was recorded."""
    params = {"user": press.user_id, "action": press.action_id, "ts": press.action_ts,
              "anomaly": press.anomaly_id, "outcome": outcome}  # fmt: skip
    cur = await conn.execute(CLAIM, params)
    return await cur.fetchone() is not None


async def handle(pool: AsyncConnectionPool, settings: Settings, payload: Any) -> Outcome:
    """Apply one press through the lifecycle service: InvalidInteraction (400) or NotFound (404)
    change nothing; a press delivered again is a duplicate; a transition no longer valid is a
    conflict (recorded, so its redelivery is a duplicate too and the presser is told once)."""
    press = parse(payload)
    actor, note = f"slack:{press.user_id}", f"from Slack by {press.user_name}"
    row: dict | None = None
    latest: dict | None = None
    async with pool.connection() as conn:
        try:
            # One transaction: the press is recorded under the row lock service.apply takes, so
            # what the presser is told is the status no one can change meanwhile.
            async with conn.transaction():
                try:
                    await service.apply(conn, press.anomaly_id, press.target, actor, note)
                    outcome = "applied"
                except InvalidTransition:  # raised before any write: the transaction is clean
                    outcome = "conflict"
                if not await _record(conn, press, outcome):
                    raise _AlreadyHandled
                if outcome == "conflict":
                    row = await repository.get_anomaly(conn, press.anomaly_id)
                    latest = await repository.latest_change(conn, press.anomaly_id)
        except _AlreadyHandled:
            return Outcome("duplicate", press.anomaly_id)
    if outcome == "applied":
        return Outcome("applied", press.anomaly_id)
    assert row is not None  # locked by service.apply in this transaction
    return Outcome(
        "conflict",
        press.anomaly_id,
        message=conflict_message(press, Status(row["status"]), latest),
        response_url=press.response_url,
    )


def conflict_message(press: Press, current: Status, latest: dict | None) -> str:
    """Who did what and when, so the presser knows why their button did nothing."""
    anomaly = f"Anomaly #{press.anomaly_id}"
    tried = f"your {BUTTONS[press.target][0]} was not applied"
    if latest is None:
        return f"{anomaly} is {current}: {tried}."
    did = {"acknowledged": "acknowledged", "resolved": "resolved"}.get(latest["to"])
    did = did or ("reopened" if latest["from"] else "opened")
    at: datetime = latest["at"].astimezone(UTC)  # psycopg gives the session's time zone
    return (
        f"{anomaly} is already {current}: {who(latest['actor'])} {did} it at"
        f" {at:%Y-%m-%d %H:%M:%S} UTC; {tried}."
    )


async def follow_up(settings: Settings, outcome: Outcome) -> None:
    """After the answer: update the message, or tell the presser of a conflict. Never raises."""
    if outcome.result == "applied":
        await nudge(settings, outcome.anomaly_id)
    elif outcome.result == "conflict" and outcome.message and outcome.response_url:
        try:
            await anyio.to_thread.run_sync(_ephemeral, outcome.response_url, outcome.message)
        except Exception as exc:  # only the type: the URL is a credential for that message
            log.warning("telling a Slack user of a conflict failed: %s", type(exc).__name__)


def _ephemeral(response_url: str, text: str) -> None:
    client = WebhookClient(response_url, timeout=EPHEMERAL_TIMEOUT_SECONDS, logger=SDK_LOG)
    answer = client.send_dict({"response_type": "ephemeral", "replace_original": False,
                               "text": text})  # fmt: skip
    if answer.status_code != 200:
        log.warning("Slack refused the ephemeral conflict message: HTTP %s", answer.status_code)


def payload_of(body: bytes) -> Any:
    """The JSON in a form-encoded `payload=` body; InvalidInteraction (400) otherwise."""
    try:
        fields = parse_qs(body.decode(), strict_parsing=True, max_num_fields=10)
        return json.loads(fields["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        raise InvalidInteraction("body: expected form field payload holding JSON") from exc


# Out of the OpenAPI document: Slack is its one client, and it is configured in Slack's app
# settings (docs), not from this document.
@router.post("/slack/interactions", status_code=200, include_in_schema=False)
async def interactions(request: Request, background: BackgroundTasks) -> Response:
    settings: Settings = request.app.state.settings
    secret = settings.slack_signing_secret
    if secret is None:
        raise SlackNotConfigured(
            "SLACK_SIGNING_SECRET is not set: Slack's button presses cannot be verified"
        )
    body = await request.body()  # capped at SENTINELOPS_API_MAX_BYTES by RequestGuard
    # Checks the v0 HMAC and that the timestamp is within 5 minutes (no replays).
    if not SignatureVerifier(secret.get_secret_value()).is_valid_request(body, request.headers):
        raise InvalidSlackSignature("the X-Slack-Signature is invalid or its timestamp is stale")
    outcome = await handle(request.app.state.pool, settings, payload_of(body))
    log.info("Slack press on anomaly %s: %s", outcome.anomaly_id, outcome.result)
    background.add_task(follow_up, settings, outcome)
    return Response(status_code=200)
