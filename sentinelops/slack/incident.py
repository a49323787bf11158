"""The app mode's messages: one per incident, rebuilt from its current row at every change, and
a short reply in its thread for each change.

Everything that comes from data (titles, notes, actor names, evidence) is escaped: Slack parses
mrkdwn in `text`, sections and context alike, and `<!channel>` in a title must not page anyone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sentinelops.slack.actions import ACTIONS, ACTIONS_BLOCK
from sentinelops.slack.messages import (
    ICON,
    console_link,
    context_block,
    cut,
    escape,
    evidence_fields,
    fallback_text,
    header_block,
    look_line,
    section_block,
    silence_line,
    window_text,
)

SLACK_USER = re.compile(r"^[UW][A-Z0-9]+$")
# What each button asks for (ACTIONS' target status), its label and where it applies.
BUTTONS = {
    "acknowledged": ("Acknowledge", ("open",)),
    "resolved": ("Resolve", ("open", "acknowledged")),
    "open": ("Reopen", ("resolved",)),
}
# Without buttons, the API call that moves the incident on from each status.
NEXT_CALL = {"open": "acknowledged", "acknowledged": "resolved", "resolved": "open"}
CHANGE_WORDS = {
    "acknowledged": (":white_check_mark:", "Acknowledged"),
    "resolved": (":heavy_check_mark:", "Resolved"),
    "open": (":leftwards_arrow_with_hook:", "Reopened"),
    "reopened": (":leftwards_arrow_with_hook:", "Reopened"),
}


def who(actor: str | None) -> str:
    """`slack:U123` as a mention of that user, anything else (`api:alice`) as escaped text."""
    if not actor:
        return "someone"
    source, _, name = actor.partition(":")
    if source == "slack" and SLACK_USER.match(name):
        return f"<@{name}>"
    return escape(actor)


def when(at: datetime | str | None, now: datetime | None = None) -> str:
    """`14:02 UTC` today, `2026-03-02 14:02 UTC` on another day."""
    if at is None:
        return ""
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    moment = moment.astimezone(UTC)
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return f"{moment:%H:%M} UTC" if moment.date() == today else f"{moment:%Y-%m-%d %H:%M} UTC"


def _said(note: str | None) -> str:
    return f" — “{escape(cut(note, 500))}”" if note else ""


def last_change_text(change: dict | None) -> str:
    """`Acknowledged by <@U1> at 14:02 UTC — “note”` for the incident's latest history row."""
    if not change:
        return "Opened · no one has acted on it yet"
    to = change.get("to") or change.get("to_status") or "open"
    if change.get("from", change.get("from_status")) is None:
        verb = "Opened"
    else:
        verb = CHANGE_WORDS.get(to, ("", to.capitalize()))[1]
    by = f"{verb} by {who(change.get('actor'))} at {when(change.get('at'))}"
    return by + _said(change.get("note"))


def reply_text(kind: str, severity: str, change: dict | None) -> str:
    """The thread reply telling one change: who did what, when (`change` is the outbox row's
    payload; an escalation's is just {"at": ...})."""
    change = change or {}
    if kind == "cleared":
        return f":large_green_circle: {_first_up(cleared_text(change))}"
    if kind == "recurred":
        return f":rotating_light: {_first_up(recurred_text(change))}"
    if kind == "unconfirmed":
        return f":white_circle: {_first_up(unconfirmed_text(change))}"
    if kind == "escalated":
        return f":arrow_up: Escalated to *{severity.upper()}* at {when(change.get('at'))}"
    icon, verb = CHANGE_WORDS.get(kind, ("", kind.capitalize()))
    return (
        f"{icon} {verb} by {who(change.get('actor'))} at {when(change.get('at'))}"
        f"{_said(change.get('note'))}"
    )


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _first_up(text: str) -> str:
    """The first letter upper-cased, the rest as it is (str.capitalize lowers "UTC", "USD")."""
    return text[:1].upper() + text[1:]


def cleared_text(notice: dict) -> str:
    """`condition cleared at 14:35 UTC, failed payments in 30 min back to 2` (the reading left
    out when the rule read none)."""
    text = f"condition cleared at {when(notice.get('at'))}"
    if notice.get("label") and notice.get("value") is not None:
        text += f", {escape(notice['label'])} back to {_number(notice['value'])}"
        if notice.get("bound") is not None:
            text += f" (alarm at {_number(notice['bound'])})"
    return text


def recurred_text(notice: dict) -> str:
    severity = str(notice.get("severity") or "").upper()
    return (
        f"back: the rule breached again at {when(notice.get('at'))}"
        + (f" (*{severity}*)" if severity else "")
        + "; still the same incident"
    )


def unconfirmed_text(notice: dict) -> str:
    """`not confirmed: found 2 min into the 14:30 UTC window, which at its close read failed
    payments in 5 min 4 (alarm at 9)`; `not confirmed at HIGH: …, which at its close breached
    at LOW only` when the closed window breached, less than the look said."""
    minutes = (notice.get("look") or {}).get("minutes")
    looked, closed = notice.get("look_severity"), notice.get("severity")
    text = f"not confirmed at {looked.upper()}" if looked and closed else "not confirmed"
    text += ": found " + (f"{minutes} min into " if minutes else "early in ")
    text += f"the {when(notice.get('window_start'))} window, which at its close"
    if looked and closed:
        return text + f" breached at {closed.upper()} only"
    if notice.get("label") and notice.get("value") is not None:
        text += f" read {escape(notice['label'])} {_number(notice['value'])}"
        if notice.get("bound") is not None:
            text += f" (alarm at {_number(notice['bound'])})"
        return text
    return text + " no longer breached"


def notice_message(row: dict, console_url: str | None = None) -> tuple[str, list[dict]]:
    """The incoming webhook's one short message for a 'cleared', 'recurred' or 'unconfirmed'
    row (it cannot update the alert it posted)."""
    anomaly, notice = row["anomaly"], row["payload"] or {}
    if row["kind"] == "cleared":
        what = f":large_green_circle: #{anomaly['id']} {cleared_text(notice)}"
    elif row["kind"] == "unconfirmed":
        what = f":white_circle: #{anomaly['id']} {unconfirmed_text(notice)}"
    else:
        what = f":rotating_light: #{anomaly['id']} is {recurred_text(notice)}"
    text = f"{what} · {escape(cut(anomaly['title'], 300))} ({anomaly['status']})"
    link = console_link(console_url, anomaly["id"])
    return fallback_text(text), [section_block(text + (f" · {link}" if link else ""))]


def buttons_block(anomaly_id: int, status: str) -> dict | None:
    elements = []
    for action_id, target in ACTIONS.items():
        label, applies = BUTTONS[target]
        if status not in applies:
            continue
        button = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": str(anomaly_id),
        }
        if target == "resolved":
            button["style"] = "primary"
        elements.append(button)
    return (
        {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements} if elements else None
    )


def incident_message(
    anomaly: dict,
    *,
    change: dict | None = None,
    buttons: bool = False,
    console_url: str | None = None,
) -> tuple[str, list[dict]]:
    """The incident's one message as it is now: severity and status first. `change` is its
    latest history row (from/to/actor/note/at), for who last changed it."""
    anomaly_id, status = anomaly["id"], anomaly["status"]
    severity = anomaly["current_severity"]
    cleared = anomaly.get("cleared_at")
    state = f"{status} · cleared" if cleared else status
    text = fallback_text(f"[{severity.upper()}] #{anomaly_id} {state}: {anomaly['title']}")
    scope = "" if anomaly["scope"] == "all" else f" ({escape(anomaly['scope'])})"
    blocks = [
        header_block(
            f"{ICON.get(severity, '')} #{anomaly_id} {severity.upper()} · {state}".strip()
        ),
        section_block(
            f"*{escape(anomaly['title'])}*\n"
            f"Rule `{escape(anomaly['rule'])}`{scope}"
            f" · window {window_text(anomaly['window_start'], anomaly['window_end'])}"
            f"{silence_line(anomaly)}{look_line(anomaly['evidence'])}"
            + (f"\n:large_green_circle: Condition cleared at {when(cleared)}" if cleared else "")
        ),
    ]
    numbers = evidence_fields(anomaly["evidence"])
    if numbers:
        blocks.append(numbers)
    link = console_link(console_url, anomaly_id)
    blocks.append(context_block(last_change_text(change) + (f" · {link}" if link else "")))
    actions = buttons_block(anomaly_id, status) if buttons else None
    if actions:
        blocks.append(actions)
    elif not buttons:
        target = NEXT_CALL.get(status, "acknowledged")
        blocks.append(
            context_block(
                f"{BUTTONS[target][0]}: `PATCH /api/v1/anomalies/{anomaly_id}` with"
                f' `{{"status": "{target}"}}` (bearer token) · details:'
                f" `GET /api/v1/anomalies/{anomaly_id}`"
            )
        )
    return text, blocks
