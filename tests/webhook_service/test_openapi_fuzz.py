"""A bounded property-based run of the OpenAPI document: whatever a client sends, the service
answers without a 5xx and with a status code the document lists."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from sentinelops.settings import Settings
from tests.conftest import live_server
from tests.support import auth
from webhook_service.main import create_app

# The document the service publishes; the cases run against a live server of the same app.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None, DATABASE_URL="postgresql://unused")).openapi()  # type: ignore[call-arg]
)


@pytest.fixture(scope="module")
def live_api(database_url, tmp_path_factory):
    from tests.conftest import make_settings

    with live_server(make_settings(database_url, tmp_path_factory.mktemp("fuzz"))) as base:
        yield base


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case, live_api):
    case.call_and_validate(
        base_url=live_api, headers=auth(), checks=[not_a_server_error, status_code_conformance]
    )
