"""A scripted HTTP server on 127.0.0.1 (a free port), so the real Slack and OpenAI client
libraries talk to something local: each request gets the next scripted reply (the last one
repeats), and every request is recorded with the reply it got."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = 2.0  # longer than any timeout the tests give a client


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = "ok"  # str as is, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # answer late, still within the client's timeout
    hang: bool = False  # answer only after the client has timed out (HANG seconds)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    reply: Reply

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        """Answered 2xx in time: what Slack counts as delivered."""
        return 200 <= self.reply.status < 300 and not self.reply.hang


class ScriptedServer:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply()]
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.accepted]

    def _next(self) -> Reply:
        with self._lock:
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = server._next()
                with server._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.received.append(Received(self.path, headers, body, reply))
                time.sleep(HANG if reply.hang else reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    content_type = (
                        "text/plain" if isinstance(reply.body, str) else "application/json"
                    )
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload.encode())))
                    self.end_headers()
                    self.wfile.write(payload.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
