"""The Slack app: a bot in one channel, one message per incident kept up to date, and a reply
in its thread for each change.

Exactly once across lost answers: the ts of every post is stored the moment Slack returns it,
and everything the outbox posts carries message metadata naming its outbox row (and anomaly),
so a retry of a row whose answer was lost (a timeout, a crash) finds its post in the channel
instead of posting it again. A failed run's notice (`post()`) is no outbox row: one attempt, no
metadata. The bot token is a secret: errors name the API error code only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import Connection
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sentinelops.slack import outbox
from sentinelops.slack.actions import METADATA_EVENT
from sentinelops.slack.delivery import ANNOUNCEMENTS
from sentinelops.slack.incident import incident_message, reply_text
from sentinelops.slack.messages import outbox_message
from sentinelops.slack.result import SDK_LOG, Policy, PostResult, seconds

# Web API errors about the app or its channel, not one message: every row would fail the same.
# missing_scope too: an app installed without a scope the manifest names fails every row alike.
REFUSED_CODES = ("channel_not_found", "not_in_channel", "is_archived", "invalid_auth",
                 "not_authed", "account_inactive", "token_revoked", "token_expired",
                 "not_allowed_token_type", "team_access_not_granted", "missing_scope",
                 "no_permission", "ekm_access_denied", "restricted_action",
                 "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
                 "restricted_action_non_threadable_channel")  # fmt: skip
# Errors Slack documents as temporary: retried with backoff, and the pass ends (the next rows
# would meet the same).
TRANSIENT_CODES = frozenset({"internal_error", "fatal_error", "service_unavailable",
                             "request_timeout", "team_added_to_org",
                             "org_login_required"})  # fmt: skip
# Errors about one message: that row fails, the next may well go through.
MESSAGE_CODES = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text",
                           "invalid_arguments", "invalid_metadata_format", "metadata_too_large",
                           "invalid_metadata_schema", "too_many_attachments",
                           "cannot_reply_to_message", "duplicate_message_not_found"})  # fmt: skip
# chat.update on a message someone deleted (or can no longer be edited): post a fresh one.
GONE_CODES = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
BROADCAST = frozenset({"escalated", "reopened", "recurred"})
HISTORY_PAGES = 5  # a lost post is minutes old: a few pages of the channel reach it


class Failed(Exception):
    """A Slack call that did not succeed, with what it comes to for the row."""

    def __init__(self, result: PostResult) -> None:
        super().__init__(result.error)
        self.result = result


def api_result(exc: SlackApiError) -> PostResult:
    response = exc.response
    status = response.status_code
    code = response.get("error") if isinstance(response.data, dict) else None
    if not isinstance(code, str) or not code.replace("_", "").isalnum():
        code = f"HTTP {status}"  # a non-JSON answer (a 5xx page): its text is not kept
    error = f"Slack API: {code}"
    if code in REFUSED_CODES:
        return PostResult(False, error=error, status=status, permanent=True, refused=True)
    if code in ("ratelimited", "rate_limited") or status == 429:
        retry_after = seconds(response.headers.get("Retry-After"))
        return PostResult(False, error=error, status=status, retry_after=retry_after)
    if code in MESSAGE_CODES:
        return PostResult(False, error=error, status=status, permanent=True)
    if status != 200 or code in TRANSIENT_CODES:  # 5xx, a proxy's page, Slack's own trouble
        return PostResult(False, error=error, status=status, transient=True)
    # A code not listed: its row fails (no retry would change Slack's answer) and the pass
    # ends, so a code that is about the channel after all costs one row per pass, not all.
    return PostResult(False, error=error, status=status, permanent=True, transient=True)


@dataclass(frozen=True)
class SlackApp:
    token: str
    channel_id: str | None
    api_url: str
    policy: Policy
    buttons: bool = False
    console_url: str | None = None
    refused_pattern: str = "^Slack API: (" + "|".join(REFUSED_CODES) + ")"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.token}\n{self.channel_id}".encode()).hexdigest()[:16]

    def skip_reason(self, row: dict) -> str | None:
        return None

    def send(self, conn: Connection, row: dict) -> PostResult:
        """One attempt at a row: whatever its earlier attempts already posted is not repeated."""
        client = self._client()
        try:
            if row["anomaly_id"] is None:
                return self._top_level(conn, client, row)
            return self._incident(conn, client, row)
        except Failed as failed:
            return failed.result

    def post(self, text: str, blocks: list[dict] | None = None) -> PostResult:
        """One top-level message (a failed run's notice), one attempt."""
        try:
            self._call(self._client().chat_postMessage, text=text, blocks=blocks)
        except Failed as failed:
            return failed.result
        return PostResult(True, status=200)

    # --- rows --------------------------------------------------------------------------------
    def _top_level(self, conn: Connection, client: WebClient, row: dict) -> PostResult:
        """A daily summary or a catch-up: one post, its ts kept in the row's reply_ts."""
        if row["reply_ts"] is None:
            ts = self._find_posted(client, row) if row["attempts"] > 1 else None
            if ts is None:
                text, blocks = outbox_message(row, self.console_url)
                ts = self._post(client, row, text, blocks)
            outbox.store_reply(conn, row["id"], ts)
        return PostResult(True, status=200)

    def _incident(self, conn: Connection, client: WebClient, row: dict) -> PostResult:
        anomaly, kind = row["anomaly"], row["kind"]
        ts = row["message_ts"]
        if ts is None and kind in ANNOUNCEMENTS and row["attempts"] > 1:
            # An earlier attempt may have posted it and lost the answer (a timeout, a crash).
            ts = self._find_posted(client, row)
            if ts is not None:
                outbox.store_message(conn, anomaly["id"], self._channel, ts)
        if ts is None:
            if kind not in ANNOUNCEMENTS:
                return PostResult(False, skipped="no Slack message for this anomaly (never posted)")
            if anomaly["status"] != "open":  # acted on before its alert went out
                return PostResult(False, skipped=f"anomaly {anomaly['status']} before the post")
            self._post_incident(conn, client, row)
            return PostResult(True, status=200)
        text, blocks = self._incident_message(conn, anomaly)
        try:
            self._call(client.chat_update, ts=ts, text=text, blocks=blocks)
        except Failed as failed:
            if (failed.result.error or "").removeprefix("Slack API: ") not in GONE_CODES:
                raise
            # Deleted in Slack: a fresh message replaces it. The stored ts is overwritten only
            # once the fresh one exists, so a failed (or lost) fresh post leaves the retry on
            # this same path, never at "no message": it looks for a lost one first.
            found = self._find_posted(client, row) if row["attempts"] > 1 else None
            if found:
                outbox.store_message(conn, anomaly["id"], self._channel, found)
            ts = found or self._post_incident(conn, client, row)
        if kind != "opened" and row["reply_ts"] is None:
            reply_ts = self._find_reply(client, row, ts) if row["attempts"] > 1 else None
            if reply_ts is None:
                change = row["payload"] if kind != "escalated" else {"at": row["created_at"]}
                text = reply_text(kind, row["severity"], change)
                reply_ts = self._post(
                    client, row, text, thread_ts=ts, reply_broadcast=kind in BROADCAST
                )
            outbox.store_reply(conn, row["id"], reply_ts)
        return PostResult(True, status=200)

    def _post_incident(self, conn: Connection, client: WebClient, row: dict) -> str:
        anomaly = row["anomaly"]
        text, blocks = self._incident_message(conn, anomaly)
        ts = self._post(client, row, text, blocks)
        outbox.store_message(conn, anomaly["id"], self._channel, ts)
        return ts

    def _incident_message(self, conn: Connection, anomaly: dict) -> tuple[str, list[dict]]:
        change = conn.execute(outbox.LAST_CHANGE, {"id": anomaly["id"]}).fetchone()
        last = (
            dict(zip(("from", "to", "actor", "note", "at"), change, strict=True))
            if change
            else None
        )
        return incident_message(
            anomaly, change=last, buttons=self.buttons, console_url=self.console_url
        )

    # --- Slack calls -------------------------------------------------------------------------
    @property
    def _channel(self) -> str:
        if not self.channel_id:
            raise ValueError("the Slack app needs a channel (SLACK_CHANNEL_ID)")
        return self.channel_id

    def _client(self) -> WebClient:
        return WebClient(
            token=self.token,
            base_url=self.api_url,
            timeout=self.policy.timeout_seconds,  # type: ignore[arg-type]
            logger=SDK_LOG,
            retry_handlers=[],  # a retried post could post twice: the outbox owns retries
        )

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(channel=self._channel, **kwargs)
        except SlackApiError as exc:
            raise Failed(api_result(exc)) from None
        except Exception as exc:  # timeouts, refused connections: Slack may be back later
            error = f"Slack API: {type(exc).__name__}"
            raise Failed(PostResult(False, error=error, transient=True)) from None

    def _post(
        self, client: WebClient, row: dict, text: str, blocks: list[dict] | None = None, **kw: Any
    ) -> str:
        response = self._call(
            client.chat_postMessage,
            text=text,
            blocks=blocks,
            metadata={"event_type": METADATA_EVENT, "event_payload": _payload(row)},
            **kw,
        )
        return str(response["ts"])

    def _find_posted(self, client: WebClient, row: dict) -> str | None:
        """The ts of the top-level message this row posted, if an earlier attempt did."""
        oldest = (row["created_at"] - timedelta(minutes=1)).timestamp()
        cursor = None
        for _ in range(HISTORY_PAGES):
            page = self._call(
                client.conversations_history, include_all_metadata=True, oldest=f"{oldest:.6f}",
                limit=200, cursor=cursor,
            )  # fmt: skip
            top = [m for m in page.get("messages") or [] if m.get("thread_ts") in (None, m["ts"])]
            found = _posted_by(top, row)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if found or not cursor:
                return found
        return None

    def _find_reply(self, client: WebClient, row: dict, ts: str) -> str | None:
        page = self._call(client.conversations_replies, ts=ts, include_all_metadata=True, limit=200)
        return _posted_by((page.get("messages") or [])[1:], row)


def _payload(row: dict) -> dict:
    """The metadata of what this row posts. Slack refuses null values (invalid_metadata_format):
    a key with none, like the anomaly of a summary or a catch-up, is left out."""
    payload = {"anomaly_id": row["anomaly_id"], "notification_id": row["id"], "change": row["kind"]}
    return {key: value for key, value in payload.items() if value is not None}


def _posted_by(messages: list[dict], row: dict) -> str | None:
    """The ts of the message this row posted: its metadata names the row, and the anomaly
    exactly when the row has one (a key left out stands for none)."""
    wanted = {key: str(value) for key, value in _payload(row).items() if key != "change"}
    for message in messages:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") != METADATA_EVENT or not isinstance(payload, dict):
            continue
        found = {
            key: str(value)
            for key, value in payload.items()
            if key in ("anomaly_id", "notification_id") and value is not None
        }
        if found == wanted:
            return str(message["ts"])
    return None
