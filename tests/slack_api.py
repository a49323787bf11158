"""A local fake of Slack's Web API, reached through the real slack_sdk WebClient.

    with FakeSlack() as slack:                      # channel "C0ALERTS" by default
        client = WebClient(token="xoxb-test", base_url=slack.url)   # url ends in /api/
        slack.fail("chat.postMessage", "not_in_channel")            # next call only
        slack.fail("chat.update", "ratelimited", times=2)           # 429, Retry-After 30
        slack.fail("conversations.history", Fault(status=500))      # HTTP 500
        slack.lose_answer("chat.postMessage")   # applied, then hangs past the client timeout
        slack.latency = 0.05                    # every answer this late (concurrency tests)
        slack.fail("chat.postMessage", "channel_not_found", times=None)  # until heal()
        slack.top_level()        # top-level messages of the channel, oldest first
        slack.thread(ts)         # the replies under `ts`, oldest first
        slack.message(ts)        # one message (dict) by ts, or None
        slack.delete(ts)         # as if someone deleted it in Slack
        slack.calls("chat.postMessage")   # params of every such call (faulted ones too)
        slack.response_url("x")  # a response_url here; POSTed JSON bodies land in .responses

Messages are dicts: ts, channel, text, blocks, thread_ts (None for top-level), reply_broadcast,
metadata (a dict or None), edited (how often chat.update changed it). Implemented: chat.postMessage,
chat.update, conversations.history (top-level messages and broadcast replies, newest first,
metadata only with include_all_metadata), conversations.replies (parent first, then replies).
Unknown methods answer unknown_method. Metadata is checked like Slack does: an event_type, and no
null among the event_payload's values (invalid_metadata_format). The SDK posts everything (chat.*
as JSON, conversations.* as a form): both are read, and the query string too.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CHANNEL = "C0ALERTS"
BOT_USER = "U0SENTINEL"


@dataclass(frozen=True)
class Fault:
    error: str | None = None  # {"ok": false, "error": error}
    status: int = 200  # 429 adds Retry-After; 5xx answers a plain-text body
    retry_after: float = 30.0
    lost: bool = False  # the call is applied, then the answer comes after the client gave up


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]  # metadata and blocks decoded when they came as JSON strings
    outcome: str  # "ok", an error code, "HTTP <status>" or "lost"


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _valid_metadata(params: dict) -> bool:
    """Slack's check of message metadata: an event_type, and an event_payload (if any) that is
    an object whose values are never null."""
    metadata = params.get("metadata")
    if metadata is None:
        return True
    if not (isinstance(metadata, dict) and "event_type" in metadata):
        return False
    payload = metadata.get("event_payload", {})
    return isinstance(payload, dict) and None not in payload.values()


class FakeSlack:
    hang_seconds = 1.5  # a lost answer: longer than the 0.5 s the tests give the client
    latency = 0.0  # seconds every answer takes (within the timeout): overlaps concurrent senders

    def __init__(self, channel: str = CHANNEL) -> None:
        self.channel = channel
        self.messages: list[dict] = []  # every channel's, in posting order
        self.responses: list[Any] = []  # bodies POSTed to response_url()
        self.received: list[Call] = []
        self._faults: dict[str, list[Fault]] = {}
        self._always: dict[str, Fault] = {}
        self._last_ts = 0.0
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    # --- scripting -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def response_url(self, name: str = "1") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/response/{name}"

    def fail(self, method: str, fault: Fault | str, times: int | None = 1) -> None:
        """The next `times` calls of `method` fail (times=None: every call until heal())."""
        if isinstance(fault, str):
            fault = Fault(fault, 429 if fault == "ratelimited" else 200)
        with self._lock:
            if times is None:
                self._always[method] = fault
            else:
                self._faults.setdefault(method, []).extend([fault] * times)

    def lose_answer(self, method: str, times: int = 1) -> None:
        self.fail(method, Fault(lost=True), times)

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always.clear()

    # --- what a user sees ------------------------------------------------------------------
    def top_level(self, channel: str | None = None) -> list[dict]:
        channel = channel or self.channel
        with self._lock:
            return [m for m in self.messages if m["channel"] == channel and not m["thread_ts"]]

    def thread(self, ts: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m["thread_ts"] == ts]

    def message(self, ts: str) -> dict | None:
        with self._lock:
            return next((m for m in self.messages if m["ts"] == ts), None)

    def delete(self, ts: str) -> None:
        with self._lock:
            self.messages = [m for m in self.messages if m["ts"] != ts]

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [c.params for c in self.received if method in (None, c.method)]

    # --- the API ---------------------------------------------------------------------------
    def _next_ts(self) -> str:
        # Real clock time, so `oldest` filters work; strictly increasing, like Slack's.
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def _find(self, channel: str, ts: str) -> dict | None:
        return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    def _shown(self, message: dict, params: dict) -> dict:
        shown = {k: v for k, v in message.items() if k != "metadata" and v is not None}
        shown.update(type="message", user=BOT_USER)
        if message["thread_ts"] and message["reply_broadcast"]:
            shown["subtype"] = "thread_broadcast"
        if message["metadata"] and _truthy(params.get("include_all_metadata")):
            shown["metadata"] = message["metadata"]
        return shown

    def _page(self, found: list[dict], params: dict, key: str) -> dict:
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return {
            "ok": True,
            key: [self._shown(m, params) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _apply(self, method: str, p: dict) -> dict:
        channel = p.get("channel")
        if method in ("chat.postMessage", "chat.update") and not _valid_metadata(p):
            return {"ok": False, "error": "invalid_metadata_format"}
        if method == "chat.postMessage":
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            if not p.get("text") and not p.get("blocks"):
                return {"ok": False, "error": "no_text"}
            metadata = p.get("metadata")
            thread_ts = p.get("thread_ts") or None
            if thread_ts and self._find(channel, thread_ts) is None:
                return {"ok": False, "error": "thread_not_found"}
            message = {
                "ts": self._next_ts(), "channel": channel, "text": p.get("text"),
                "blocks": p.get("blocks"), "thread_ts": thread_ts,
                "reply_broadcast": bool(thread_ts and _truthy(p.get("reply_broadcast"))),
                "metadata": metadata, "edited": 0,
            }  # fmt: skip
            self.messages.append(message)
            return {"ok": True, "channel": channel, "ts": message["ts"], "message": dict(message)}
        if method == "chat.update":
            message = self._find(channel or "", p.get("ts") or "")
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            for key in ("text", "blocks", "metadata"):
                if p.get(key) is not None:
                    message[key] = p[key]
            message["edited"] += 1
            return {"ok": True, "channel": channel, "ts": message["ts"], "text": message["text"]}
        if method == "conversations.history":
            oldest = float(p.get("oldest") or 0)
            latest = float(p.get("latest") or "inf")
            found = [
                m for m in reversed(self.messages)
                if m["channel"] == channel and oldest < float(m["ts"]) <= latest
                and (not m["thread_ts"] or m["reply_broadcast"])
            ]  # fmt: skip
            return self._page(found, p, "messages")
        if method == "conversations.replies":
            parent = self._find(channel or "", p.get("ts") or "")
            if parent is None:
                return {"ok": False, "error": "thread_not_found"}
            return self._page([parent, *self.thread(parent["ts"])], p, "messages")
        return {"ok": False, "error": "unknown_method"}

    def _handle(self, method: str, params: dict) -> tuple[int, dict | str, dict, bool]:
        """(status, body, headers, lost) for one call, applied unless a fault says otherwise."""
        for key in ("metadata", "blocks"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        with self._lock:
            queued = self._faults.get(method)
            fault = queued.pop(0) if queued else self._always.get(method)
            if fault is not None and not fault.lost:
                outcome = fault.error or f"HTTP {fault.status}"
                self.received.append(Call(method, params, outcome))
                if fault.status >= 500:
                    return fault.status, "Internal Server Error", {}, False
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.status == 429 else {}
                return fault.status, {"ok": False, "error": fault.error}, headers, False
            answer = self._apply(method, params)
            lost = fault is not None
            outcome = "lost" if lost else "ok" if answer["ok"] else answer["error"]
            self.received.append(Call(method, params, outcome))
            return 200, answer, {}, lost

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _params(self, body: bytes) -> dict[str, Any]:
                params: dict[str, Any] = dict(parse_qsl(urlsplit(self.path).query))
                if "json" in (self.headers.get("Content-Type") or ""):
                    params.update(json.loads(body or b"{}"))
                elif body:
                    params.update(parse_qsl(body.decode()))
                return params

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if path.startswith("/response/"):
                    with fake._lock:
                        fake.responses.append(json.loads(body or b"null"))
                    self._send(200, "ok", {})
                    return
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    self._send(200, {"ok": False, "error": "not_authed"}, {})
                    return
                method = path.removeprefix("/api/")
                status, answer, headers, lost = fake._handle(method, self._params(body))
                time.sleep(fake.hang_seconds if lost else fake.latency)
                self._send(status, answer, headers)

            def _send(self, status: int, answer: dict | str, headers: dict) -> None:
                payload = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    kind = "text/plain" if isinstance(answer, str) else "application/json"
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            do_POST = do_GET = _answer  # noqa: N815 (http.server's naming)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeSlack:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
