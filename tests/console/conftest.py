"""The console signed in, shared by its tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.support import TOKEN
from webhook_service.main import create_app


@pytest.fixture
def console(database_url, tmp_path):
    """The console signed in as alice: her actions are recorded as `console:alice`."""
    settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=f"alice={TOKEN}")
    with TestClient(create_app(settings)) as client:
        client.post("/console/sign-in", data={"token": TOKEN, "next": "/console"})
        yield client
