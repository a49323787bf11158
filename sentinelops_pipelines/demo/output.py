"""What `sentinelops demo` shows: one progress line on stderr, the result on stdout, and any
failure as one line (no traceback), whatever the libraries underneath would have printed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

import httpx


class DemoError(Exception):
    """Ends the demo with one line on stderr; exit status 1 when something failed, 2 when the
    demo refused to run or has nothing to run with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Progress:
    """One line: rewritten in place on a terminal; elsewhere (a pipe, CI's log) a plain line
    per step and no per-event updates."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._drawn = False

    def step(self, text: str) -> None:
        if self.tty:
            self._draw(text)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, text: str) -> None:
        if self.tty:
            self._draw(text)

    def done(self, text: str) -> None:
        self.step(text)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def clear(self) -> None:
        """Erase the line on a terminal, so an error message stands alone."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self, text: str) -> None:
        # A line wider than the terminal wraps, and \r then redraws only its last part.
        width = shutil.get_terminal_size().columns - 1
        self.stream.write(f"\r\x1b[K{text[:width]}")
        self.stream.flush()
        self._drawn = True


def first_line(value: object) -> str:
    """An error in one line: its message's first, or its type's name when it says nothing."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def describe_answer(response: httpx.Response) -> str:
    """`503 WebhookNotConfigured: why`, from the API's {"error", "detail"} body, or the status
    and the start of whatever else answered (a proxy's HTML page, another service)."""
    body = json_body(response)
    if "error" in body:
        line = f"{response.status_code} {body['error']}: {body.get('detail', '')}"
        if body.get("reason") == "signature_mismatch":
            line += " (the API runs with another webhook secret than the one the demo signs with)"
        return line
    text = " ".join(response.text.split())[:200]
    return f"{response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def json_body(response: httpx.Response) -> dict:
    """The answer's JSON object, or {} when it is none (not JSON, or not an object)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class Result:
    api: str
    sent: int
    stored: int
    duplicates: int
    payments: int
    declined: int
    window: tuple[datetime, datetime]
    windows_evaluated: int
    opened: int
    extended: int
    anomalies: list[dict] = field(default_factory=list)
    token_source: str = ""  # how to set $TOKEN, never the token itself
    console: bool = False
    dagster_run: str | None = None  # the run's URL when the stack's Dagster recorded it
    slack: str | None = None  # what the alerts delivery did, when Slack is configured


def render(result: Result) -> str:
    api, (start, end) = result.api, result.window
    kept = f"{result.stored} stored" + (
        f", {result.duplicates} already there" if result.duplicates else ""
    )
    lines = [
        f"Sent {result.sent} demo Stripe events ({result.payments} test-mode payments,"
        f" {result.declined} declined, most in the last 15 minutes) to {api}: {kept}.",
        f"The rules evaluated {result.windows_evaluated} windows, {start:%H:%M}-{end:%H:%M} UTC:"
        f" {_count(result.opened, 'anomaly', 'anomalies')} opened,"
        f" {result.extended} extended.",
        "",
    ]
    if result.anomalies:
        lines.append("Open anomalies in those windows:")
        lines += [
            f"  #{a.get('id')} [{a.get('severity')}] {a.get('rule')}: {a.get('title')}"
            for a in result.anomalies
        ]
    else:
        lines.append(
            "No open anomaly in those windows: other traffic may outweigh the spike there."
        )
    lines += ["", "Where to look:", f"  API      {api}/api/v1/anomalies?only_open=true"]
    if result.console:
        first = f"/incidents/{result.anomalies[0].get('id')}" if result.anomalies else ""
        lines.append(f"  Console  {api}/console{first}   (sign in with the API token)")
    if result.dagster_run:
        lines.append(f"  Dagster  {result.dagster_run}")
    if result.slack:
        lines.append(f"  Slack    {result.slack}")
    if result.anomalies:
        one = f"{api}/api/v1/anomalies/{result.anomalies[0].get('id')}"
        auth = '-H "Authorization: Bearer $TOKEN"'
        lines += ["", "Work one through its lifecycle:", f"  {result.token_source}"]
        lines.append(f"  curl {auth} {one}")
        for status in ("acknowledged", "resolved"):
            lines.append(
                f"  curl -X PATCH {auth} -H 'Content-Type: application/json'"
                f' -d \'{{"status": "{status}"}}\' {one}'
            )
    return "\n".join(lines)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
