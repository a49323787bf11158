"""GET /api/v1/summaries/daily/{date}: the stored summary, behind the token; 404 and 422."""

from __future__ import annotations

import json

import pytest

from tests.support import auth, error_of

PATH = "/api/v1/summaries/daily/{}"


@pytest.fixture
def summary(db):
    db.execute(
        "INSERT INTO daily_summaries (date, facts, overall, highlights, watch, text, used_ai,"
        " ai_error, model, delivered_at) VALUES ('2026-03-09', %s, %s, %s, %s, %s, true, NULL,"
        " 'gpt-test', '2026-03-10 00:10:03+00')",
        (json.dumps({"date": "2026-03-09"}), "A calm day.", json.dumps(["1,728 payments"]),
         json.dumps([]), "SentinelOps daily summary, 2026-03-09 (UTC)\n..."),
    )  # fmt: skip


def test_a_generated_day_is_served_as_stored(client, summary):
    response = client.get(PATH.format("2026-03-09"), headers=auth())
    assert response.status_code == 200
    assert response.json() == {
        "date": "2026-03-09",
        "overall": "A calm day.",
        "highlights": ["1,728 payments"],
        "watch": [],
        "text": "SentinelOps daily summary, 2026-03-09 (UTC)\n...",
        "used_ai": True,
        "ai_error": None,
        "delivered_at": "2026-03-10T00:10:03Z",
    }


@pytest.mark.parametrize(
    ("day", "headers", "status", "error"),
    [
        pytest.param("2026-03-08", auth(), 404, "NotFound", id="a_day_not_generated"),
        pytest.param("2026-13-01", auth(), 422, "ValidationError", id="not_a_date"),
        pytest.param("yesterday", auth(), 422, "ValidationError", id="not_iso_8601"),
        pytest.param("2026-03-09", {}, 401, "Unauthorized", id="no_token"),
    ],
)
def test_refusals(client, summary, day, headers, status, error):
    response = client.get(PATH.format(day), headers=headers)
    assert error_of(response) == (status, error)
