"""Stripe's Events API on a local port, for the real stripe client to talk to.

Serves GET /v1/events in Stripe's list format (newest first; `created[gte]`, `created[lte]`,
`types[]`, `starting_after`, `limit`), answers 401 to any other key, and can be told to fail chosen
requests with the status and headers Stripe sends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

KEY = "sk_test_reconciliation_0123456789abcdef"

# Error bodies and headers as Stripe sends them.
RATE_LIMITED = (
    429,
    {"Retry-After": "1", "Stripe-Should-Retry": "true"},
    {"code": "rate_limit", "type": "invalid_request_error",
     "message": "Request rate limit exceeded. Learn more about rate limits here"
                " https://stripe.com/docs/rate-limits."},
)  # fmt: skip
SERVER_ERROR = (500, {}, {"type": "api_error", "message": "An unknown error occurred"})


@dataclass
class Seen:
    at: float
    query: dict[str, str]
    status: int


@dataclass
class EventsAPI:
    events: list[dict]
    requests: list[Seen] = field(default_factory=list)
    failures: dict[int, tuple[int, dict, dict]] = field(default_factory=dict)

    def fail(self, failure: tuple[int, dict, dict], at: list[int]) -> None:
        """Answer the requests numbered `at` (0 is the first this server gets) with `failure`."""
        self.failures.update(dict.fromkeys(at, failure))

    def listed(self, query: dict[str, str]) -> tuple[int, dict, dict]:
        types = {v for k, v in query.items() if k.startswith("types[")}
        newest_first = sorted(self.events, key=lambda e: (e["created"], e["id"]), reverse=True)
        chosen = [
            e
            for e in newest_first
            if int(query.get("created[gte]", 0)) <= e["created"]
            and e["created"] <= int(query.get("created[lte]", 2**40))
            and (not types or e["type"] in types)
        ]
        if "starting_after" in query:
            ids = [e["id"] for e in chosen]
            if query["starting_after"] not in ids:
                return 400, {}, {"type": "invalid_request_error", "message": "No such event"}
            chosen = chosen[ids.index(query["starting_after"]) + 1 :]
        limit = min(int(query.get("limit", 10)), 100)
        return 200, {}, {"object": "list", "url": "/v1/events", "has_more": len(chosen) > limit,
                         "data": chosen[:limit]}  # fmt: skip

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict, dict]:
        url = urlparse(path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path != "/v1/events":
            status, headers, body = 404, {}, {"type": "invalid_request_error"}
        elif authorization != f"Bearer {KEY}":
            # Stripe masks the key it got; a careless proxy might not, so this echoes it whole.
            message = f"Invalid API Key provided: {authorization}"
            status, headers, body = 401, {}, {"type": "invalid_request_error", "message": message}
        elif len(self.requests) in self.failures:
            status, headers, body = self.failures[len(self.requests)]
        else:
            status, headers, body = self.listed(query)
        self.requests.append(Seen(time.monotonic(), query, status))
        return status, headers, body if status == 200 else {"error": body}

    @contextmanager
    def serve(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = api.answer(self.path, self.headers.get("Authorization"))
                raw = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
