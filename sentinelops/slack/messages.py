"""Block Kit messages: an anomaly alert, the daily summary, a pipeline failure.

Each returns (text, blocks): Slack shows `text` in notifications and where blocks cannot be
rendered, so it stands on its own. Slack parses `text` as mrkdwn too, so it is escaped like the
blocks: a title or summary holding `<!channel>` must not page a channel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sentinelops.severity import HIGHEST_FIRST

# Evidence that is bookkeeping, not a number an operator acts on.
HIDDEN = frozenset(
    {"rule_definition", "rule_version", "sample_event_ids", "thresholds", "window_start", "_demo"}
)
MAX_FIELDS = 10  # Slack's limit per section
SECTION_LIMIT = 2900  # Slack refuses section text over 3000 characters
TEXT_LIMIT = 3000
ICON = {"low": ":large_yellow_circle:", "medium": ":large_orange_circle:", "high": ":red_circle:"}


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fallback_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """The top-level `text`: escaped, then cut to `limit` without splitting an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    kept, size = [], 1  # room for the ellipsis
    for char in text:
        piece = escape(char)
        if size + len(piece) > limit:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "…"


def section_block(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}


def header_block(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, 150)}}


def context_block(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}]}


def key_numbers(evidence: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(label, value) for every number and short word in the evidence, in its order."""
    found: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if key in HIDDEN:
            continue
        label = f"{prefix} {key}".strip().replace("_", " ")
        if isinstance(value, dict):
            found += key_numbers(value, label)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float):
            found.append((label, f"{value:,}"))
        elif isinstance(value, str) and len(value) <= 40:
            found.append((label, value))
    return found


def window_text(start: datetime, end: datetime) -> str:
    same_day = start.date() == end.date()
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC" if same_day else (
        f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    )  # fmt: skip


def console_link(console_url: str | None, anomaly_id: int) -> str:
    """`<url|Open in the console>` (mrkdwn), or nothing without a console URL."""
    if not console_url:
        return ""
    url = f"{console_url.rstrip('/')}/incidents/{anomaly_id}"
    return f"<{escape(url)}|Open #{anomaly_id} in the console>"


def silence_line(anomaly: dict) -> str:
    """A new line `:zzz: Found during silence #3 (reason: …)` for an anomaly recorded while a
    silence held it (its alert went out when the silence ended), else nothing: whoever reads
    the alert late should know why it is late."""
    silence_id = anomaly.get("silenced_by")
    if silence_id is None:
        return ""
    reason = anomaly.get("silence_reason")
    why = f" (reason: {escape(cut(reason, 300))})" if reason else ""
    return f"\n:zzz: Found during silence #{silence_id}{why}"


def look_line(evidence: dict[str, Any] | None) -> str:
    """A new line saying an anomaly was found by an early look at its window still open
    (sentinelops_pipelines/looks.py), and what the closed window said of it, else nothing."""
    evidence = evidence or {}
    unconfirmed = evidence.get("unconfirmed")
    seen = evidence.get("look") or evidence.get("early_look") or (unconfirmed or {}).get("look")
    if not seen:
        return ""
    found = f"\n:eyes: Found {seen.get('minutes')} min into its 5-minute window"
    if unconfirmed and unconfirmed.get("severity"):
        return found + f"; once closed, it breached at {unconfirmed['severity'].upper()} only"
    if unconfirmed:
        return found + "; not confirmed once the window closed"
    if "early_look" in evidence:
        return found + "; confirmed once the window closed"
    return found + ", before it closed"


def evidence_fields(evidence: dict[str, Any] | None) -> dict | None:
    """The evidence's key numbers as one section of fields (Slack shows at most 10)."""
    fields = key_numbers(evidence or {})[:MAX_FIELDS]
    if not fields:
        return None
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": cut(f"*{escape(k)}*\n{escape(v)}", 2000)} for k, v in fields
        ],
    }


def anomaly_alert(notification: dict, console_url: str | None = None) -> tuple[str, list[dict]]:
    """An anomaly that opened or escalated; `notification["anomaly"]` is its current row."""
    a = notification["anomaly"]
    severity, anomaly_id = notification["severity"], a["id"]
    what = "escalated to" if notification["kind"] == "escalated" else "opened at"
    text = fallback_text(
        f"[{severity.upper()}] Anomaly #{anomaly_id} {what} {severity}: {a['title']}"
    )
    scope = "" if a["scope"] == "all" else f" ({escape(a['scope'])})"
    blocks = [
        header_block(f"{ICON.get(severity, '')} Anomaly #{anomaly_id} {what} {severity.upper()}"),
        section_block(
            f"*{escape(a['title'])}*\n"
            f"Rule `{escape(a['rule'])}`{scope} · severity *{a['current_severity']}*"
            f" · status {a['status']}\n"
            f"Window {window_text(a['window_start'], a['window_end'])}"
            f"{silence_line(a)}{look_line(a.get('evidence'))}"
        ),
    ]
    numbers = evidence_fields(a["evidence"])
    if numbers:
        blocks.append(numbers)
    link = console_link(console_url, anomaly_id)
    blocks.append(
        context_block(
            (f"{link} · " if link else "")
            + f"Acknowledge: `PATCH /api/v1/anomalies/{anomaly_id}` with"
            ' `{"status": "acknowledged"}` (bearer token) · details:'
            f" `GET /api/v1/anomalies/{anomaly_id}`"
        )
    )
    return text, blocks


def _bullets(items: list[str], empty: str) -> str:
    return "\n".join(f"• {escape(item)}" for item in items) if items else empty


def summary_message(summary: dict) -> tuple[str, list[dict]]:
    day = summary["date"].isoformat()
    how = (
        f"Worded by {escape(summary['model'] or 'AI')}; every number checked against the facts"
        if summary["used_ai"]
        else "Deterministic summary from the day's rollups"
    )
    blocks = [
        header_block(f"Daily operations summary · {day} (UTC)"),
        section_block(f"*Overall*\n{escape(summary['overall'])}"),
        section_block(f"*Highlights*\n{_bullets(summary['highlights'], 'Nothing stood out.')}"),
        section_block(f"*Watch*\n{_bullets(summary['watch'], 'Nothing needs watching.')}"),
        context_block(f"{how} · `GET /api/v1/summaries/daily/{day}`"),
    ]
    return fallback_text(summary["text"]), blocks


def failure_message(job_name: str, run_id: str, error: str) -> tuple[str, list[dict]]:
    text = fallback_text(f"SentinelOps pipeline run failed: {job_name} (run {run_id})")
    blocks = [
        header_block(f":warning: Pipeline run failed: {job_name}"),
        section_block(
            f"Run `{run_id}` of `{escape(job_name)}` failed.\n```{escape(error[:1500])}```"
        ),
        context_block(f"Open the Dagster UI, Runs, run {run_id[:8]}, for the logs."),
    ]
    return text, blocks


MAX_LISTED = 15  # incidents named one by one; the counts cover all of them


def catch_up_message(incidents: list[dict]) -> tuple[str, list[dict]]:
    """Incidents a run found long after their windows ended (a catch-up after downtime,
    imported history): one message with the counts, not one alert each."""
    by_rule: dict[str, dict[str, int]] = {}
    for a in incidents:
        counts = by_rule.setdefault(a["rule"], dict.fromkeys(HIGHEST_FIRST, 0))
        counts[a["severity"]] += 1
    oldest = min(a["window_start"] for a in incidents)
    newest = max(a["window_end"] for a in incidents)
    n = len(incidents)
    noun = "incident" if n == 1 else "incidents"
    text = fallback_text(
        f"Catch-up: {n} past {noun} found late, {window_text(oldest, newest)}"
        " (recorded, not posted one by one)"
    )
    lines = [
        f"`{escape(rule)}`: " + ", ".join(f"{c} {sev}" for sev, c in counts.items() if c)
        for rule, counts in sorted(by_rule.items())
    ]
    listed = [
        f"#{a['id']} {a['severity']} · {window_text(a['window_start'], a['window_end'])}"
        f" · {escape(a['title'])} ({a['status']})"
        for a in incidents[:MAX_LISTED]
    ]
    if n > MAX_LISTED:
        listed.append(f"… and {n - MAX_LISTED} more")
    blocks = [
        header_block(f":hourglass: {n} past {noun} found late"),
        section_block(
            f"The rules caught up on windows that ended long before they were"
            f" evaluated (downtime, imported history or late deliveries). Oldest window start"
            f" {oldest:%Y-%m-%d %H:%M} UTC, newest window end {newest:%Y-%m-%d %H:%M} UTC.\n"
            + "\n".join(lines)
        ),
        section_block("\n".join(listed)),
        context_block(
            "Each is recorded with `found_late: true`: `GET /api/v1/anomalies?only_open=true`"
        ),
    ]
    return text, blocks


def outbox_message(row: dict, console_url: str | None = None) -> tuple[str, list[dict]]:
    """The top-level message of an outbox row: an alert, a catch-up or a daily summary."""
    if row["kind"] == "catch_up":
        return catch_up_message(row["incidents"])
    if row.get("summary"):
        return summary_message(row["summary"])
    return anomaly_alert(row, console_url)
