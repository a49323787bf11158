"""Button presses over Socket Mode (SLACK_APP_TOKEN): the listener acks and applies them, the
real slack_sdk client works against a local websocket, and `sentinelops up` says which way the
buttons arrive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time

from fastapi.testclient import TestClient
from slack_sdk.socket_mode.request import SocketModeRequest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from sentinelops.up import slack_mode
from tests.conftest import make_settings
from tests.local_http import Reply, ScriptedServer
from tests.slack.test_interactions import RESOLVE, URL, app, app_settings, payload, slack, state
from tests.webhook_service.test_anomalies_api import add_anomaly
from webhook_service.main import create_app
from webhook_service.slack.socket_mode import SocketMode

__all__ = ["app", "app_settings", "slack"]  # fixtures used here


def test_a_socket_mode_press_is_acked_and_applied(app, db, app_settings):
    anomaly_id = add_anomaly(db)
    loop = app.portal.call(asyncio.get_running_loop)
    socket = SocketMode(app_settings, app.app.state.pool, loop)

    class Client:
        acks: list[str] = []

        def send_socket_mode_response(self, response):
            self.acks.append(response.envelope_id)

    client = Client()
    for envelope, kind in (("e1", "hello_unused"), ("e2", "interactive")):
        body = payload(anomaly_id, RESOLVE, user="U0SOCK", name="sam")
        socket.listener(client, SocketModeRequest(type=kind, envelope_id=envelope, payload=body))
    for future in list(socket.pending):
        future.result(timeout=10)
    assert client.acks == ["e1", "e2"]
    assert db.execute(
        "SELECT to_status, actor, note FROM anomaly_history WHERE anomaly_id = %s"
        " ORDER BY id DESC LIMIT 1",
        (anomaly_id,),
    ).fetchone() == ("resolved", "slack:U0SOCK", "from Slack by sam")


def test_the_real_socket_mode_client_gets_a_press_over_a_websocket(database_url, tmp_path, db):
    """End to end through the API's lifespan: apps.connections.open on a scripted Web API, then
    slack_sdk's builtin client on a local websocket that delivers one press and reads the ack."""
    anomaly_id = add_anomaly(db)
    acks: queue.Queue[dict] = queue.Queue()
    envelope = {"type": "interactive", "envelope_id": "env-1", "accepts_response_payload": False,
                "payload": payload(anomaly_id, RESOLVE, user="U0WS", name="wes")}  # fmt: skip

    def session(ws: ServerConnection) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1}))
        ws.send(json.dumps(envelope))
        with contextlib.suppress(ConnectionClosed):
            for message in ws:
                acks.put(json.loads(message))

    with serve(session, "127.0.0.1", 0) as websocket:
        threading.Thread(target=websocket.serve_forever, daemon=True).start()
        ws_url = f"ws://127.0.0.1:{websocket.socket.getsockname()[1]}/link"
        with ScriptedServer(Reply(body={"ok": True, "url": ws_url})) as web_api:
            settings = make_settings(database_url, tmp_path, SLACK_APP_TOKEN="xapp-1-test",
                                     SLACK_API_URL=f"{web_api.url}/api/")  # fmt: skip
            with TestClient(create_app(settings)):
                assert acks.get(timeout=15) == {"envelope_id": "env-1"}
                deadline = time.monotonic() + 10
                while state(db, anomaly_id)[0] != "resolved" and time.monotonic() < deadline:
                    time.sleep(0.05)
            assert web_api.received[0].path == "/api/apps.connections.open"
            assert web_api.received[0].headers["authorization"] == "Bearer xapp-1-test"
        websocket.shutdown()
    assert state(db, anomaly_id) == ("resolved", 2, 0, 1)


def test_the_banner_names_the_slack_mode(database_url, tmp_path):
    def mode(**env):
        return slack_mode(make_settings(database_url, tmp_path, **env), "http://api")

    app_env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL_ID": "C1"}
    assert mode().startswith("off")
    assert mode(SLACK_WEBHOOK_URL="https://hooks.example/x").startswith("webhook mode")
    assert "Socket Mode" in mode(**app_env, SLACK_APP_TOKEN="xapp-1")
    assert f"POST http://api{URL}" in mode(**app_env, SLACK_SIGNING_SECRET="s")
    assert "no buttons" in mode(**app_env)


def test_socket_mode_failing_to_connect_is_logged_and_the_api_serves(
    database_url, tmp_path, caplog
):
    refused = Reply(body={"ok": False, "error": "invalid_auth"})
    with ScriptedServer(refused) as web_api:
        settings = make_settings(database_url, tmp_path, SLACK_APP_TOKEN="xapp-1-revoked",
                                 SLACK_API_URL=f"{web_api.url}/api/")  # fmt: skip
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/v1/health").status_code == 200
            deadline = time.monotonic() + 10
            while "could not connect" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
    assert "Socket Mode could not connect (Slack API: invalid_auth)" in caplog.text
    assert "xapp-1-revoked" not in caplog.text
