"""Socket Mode: with SLACK_APP_TOKEN the button presses arrive over a websocket the API opens to
Slack, so the buttons work where Slack cannot reach the API (a laptop behind NAT).

The API's lifespan starts it and closes it, so whatever runs the API (`sentinelops up`)
supervises it too. slack_sdk's builtin client runs in its own threads; each press is acked at
once (Slack's 3 seconds) and handed to the event loop, to the same `handle` as the HTTP route.
Slack being unreachable is logged and retried, never a reason for the API not to start.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from sentinelops.settings import Settings
from sentinelops.slack.result import SDK_LOG
from webhook_service.errors import SentinelOpsError
from webhook_service.slack.interactions import follow_up, handle

log = logging.getLogger(__name__)
WEB_TIMEOUT_SECONDS = 10
RETRY_SECONDS = (5.0, 15.0, 60.0, 300.0)  # then every 5 minutes
CLOSE_GRACE_SECONDS = 5.0


class SocketMode:
    """The presses of one client, applied on `loop` with `pool` (the API's)."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.loop = loop
        self.client: SocketModeClient | None = None
        self.pending: set[Future[None]] = set()
        self._connecting: asyncio.Task[None] | None = None

    def listener(self, client: Any, request: SocketModeRequest) -> None:
        """Called in the SDK's worker threads for every envelope."""
        if not request.envelope_id:
            return
        # Acked before anything else: an unacked envelope is redelivered, and Slack shows the
        # presser an error after 3 seconds. The press is recorded, so a redelivery is harmless.
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        if request.type != "interactive":
            return
        future = asyncio.run_coroutine_threadsafe(self._apply(request.payload), self.loop)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)

    async def _apply(self, payload: dict) -> None:
        try:
            outcome = await handle(self.pool, self.settings, payload)
        except SentinelOpsError as exc:  # not a press of ours, or no such anomaly: nothing done
            log.warning("Slack press over Socket Mode not applied (%s): %s", exc.status_code,
                        exc.message)  # fmt: skip
            return
        except Exception as exc:  # the database, say: the presser can press again
            log.error("Slack press over Socket Mode failed: %s", type(exc).__name__)
            return
        log.info("Slack press on anomaly %s: %s", outcome.anomaly_id, outcome.result)
        await follow_up(self.settings, outcome)

    def start(self) -> None:
        token = self.settings.slack_app_token
        assert token is not None
        bot = self.settings.slack_bot_token
        web = WebClient(
            token=bot.get_secret_value() if bot else None,
            base_url=self.settings.slack_api_url,
            timeout=WEB_TIMEOUT_SECONDS,
            logger=SDK_LOG,
        )
        # The SDK's own log stays off (it can print the websocket URL, a credential); errors
        # are reported here by type.
        self.client = SocketModeClient(
            app_token=token.get_secret_value(),
            web_client=web,
            logger=SDK_LOG,
            on_error_listeners=[self._on_error],
        )
        self.client.socket_mode_request_listeners.append(self.listener)
        self._connecting = self.loop.create_task(self._connect(self.client))

    def _on_error(self, error: Exception) -> None:
        log.warning("Slack Socket Mode connection error: %s", type(error).__name__)

    async def _connect(self, client: SocketModeClient) -> None:
        """Connect, retrying until it works: once connected, the SDK reconnects by itself."""
        attempt = 0
        while not client.closed:
            try:
                # Blocking (an HTTP call, then the websocket handshake): a thread.
                await asyncio.to_thread(self._connect_once, client)
            except Exception as exc:
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                log.warning(
                    "Slack Socket Mode could not connect (%s); buttons wait until it does,"
                    " retry in %.0f s",
                    _reason(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            log.info("Slack Socket Mode connected: button presses arrive over it")
            return

    def _connect_once(self, client: SocketModeClient) -> None:
        client.connect()
        if not client.closed and not client.is_connected():
            # The SDK logs a failed handshake and returns; its monitor would retry, but the
            # log here must not say "connected".
            raise ConnectionError("the websocket handshake failed")
        # Closed while this thread was connecting (a cancelled task does not stop its thread):
        # close the session it just opened, or the SDK would keep it and reconnect forever.
        if client.closed:
            client.close()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.client is not None:
            self.client.closed = True  # no retry after this, and a late connect closes itself
            await asyncio.to_thread(self.client.close)
        if self.pending:  # presses already acked: let them finish
            await asyncio.wait(
                [asyncio.wrap_future(f) for f in list(self.pending)], timeout=CLOSE_GRACE_SECONDS
            )


def _reason(exc: Exception) -> str:
    """Slack's error code when it answered (invalid_auth, say), else the exception's type."""
    response = getattr(exc, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return f"Slack API: {code}" if code else type(exc).__name__


async def start(settings: Settings, pool: AsyncConnectionPool) -> SocketMode | None:
    """The Socket Mode client when SLACK_APP_TOKEN is set (connecting in the background)."""
    if settings.slack_app_token is None:
        return None
    socket = SocketMode(settings, pool, asyncio.get_running_loop())
    try:
        socket.start()
    except Exception as exc:  # never stops the API
        log.error("Slack Socket Mode did not start: %s", type(exc).__name__)
        return None
    return socket
