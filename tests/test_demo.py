"""`sentinelops demo` against a running API: signed traffic in, a failure spike found."""

from __future__ import annotations

from sentinelops.demo import run_demo
from tests.conftest import live_server


def test_demo_traffic_becomes_a_high_failure_spike_with_curl_lines(settings, db, capsys):
    with live_server(settings) as api:
        assert run_demo(settings, api) == 0

    out = capsys.readouterr().out
    stored = db.execute("SELECT count(*), count(DISTINCT type) FROM stripe_events").fetchone()
    assert stored[0] >= 150 and stored[1] == 4
    found = db.execute("SELECT id, rule, severity FROM anomalies").fetchall()
    assert [(rule, severity) for _, rule, severity in found] == [("payment_failure_spike", "high")]
    assert "{200: " in out
    assert f"#{found[0][0]} [high] payment_failure_spike" in out
    assert '"status": "acknowledged"' in out and '"status": "resolved"' in out
