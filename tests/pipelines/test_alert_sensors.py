"""The alert sensors: delivery follows every run that may have opened an anomaly and left a
notification to post, and a failed run reaches Slack through the same webhook."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from sentinelops_pipelines.assets.alerts import slack_notifications
from sentinelops_pipelines.assets.rules import anomalies, window_metrics
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.sensors import alerts_after_runs_sensor, pipeline_failure_sensor
from sentinelops_pipelines.slack import SlackResource
from tests.local_http import Reply, ScriptedServer


@pytest.fixture
def slack_server():
    with ScriptedServer() as server:
        yield server


def slack(server: ScriptedServer) -> SlackResource:
    return SlackResource(webhook_url=server.url, retry_backoff_seconds=0)


class TestSensors:
    def test_both_sensors_are_on_by_default(self):
        from sentinelops_pipelines.definitions import defs

        for name in ("alerts_after_runs_sensor", "pipeline_failure_sensor"):
            assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING

    def test_delivery_follows_rules_runs_but_not_itself(self, database_url, slack_server):
        instance = dg.DagsterInstance.ephemeral()
        postgres = PostgresResource(database_url=database_url)
        rules_run = dg.materialize(
            [window_metrics, anomalies], partition_key="2026-03-02-05:00", instance=instance,
            resources={"postgres": postgres, "rules": RulesResource(), "slack": SlackResource()},
        )  # fmt: skip
        delivery_run = dg.materialize(
            [slack_notifications], instance=instance,
            resources={"postgres": postgres, "slack": slack(slack_server)},
        )  # fmt: skip

        def evaluate(run: dg.ExecuteInProcessResult):
            return alerts_after_runs_sensor(
                dg.build_run_status_sensor_context(
                    sensor_name="alerts_after_runs_sensor",
                    dagster_instance=instance,
                    dagster_run=instance.get_run_by_id(run.run_id),
                    dagster_event=run.get_run_success_event(),
                    resources={"postgres": postgres},
                )
            )

        # A quiet window left nothing to post: no delivery run.
        quiet = evaluate(rules_run)
        assert isinstance(quiet, dg.SkipReason) and "nothing to post" in str(quiet.skip_message)
        with psycopg.connect(database_url, autocommit=True) as conn:  # one to post
            conn.execute(
                "INSERT INTO notifications (kind, payload, dedupe_key)"
                " VALUES ('catch_up', '[1]', 'catch-up:1')"
            )
        assert evaluate(rules_run).run_key == f"after:{rules_run.run_id}"
        assert isinstance(evaluate(delivery_run), dg.SkipReason)

    def test_a_failed_run_is_posted_to_slack_even_if_slack_hiccups(self, slack_server):
        slack_server.script(Reply(500, "internal_error"), Reply(200, "ok"))

        @dg.asset
        def broken_asset() -> None:
            raise RuntimeError("the database went away")

        instance = dg.DagsterInstance.ephemeral()
        failed = dg.materialize([broken_asset], instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name="pipeline_failure_sensor",
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(failed.run_id),
            dagster_event=failed.get_run_failure_event(),
            resources={"slack": slack(slack_server)},
        ).for_run_failure()
        pipeline_failure_sensor(context)
        (message,) = slack_server.accepted
        assert failed.run_id in message.json()["text"]
        assert message.json()["blocks"][0]["text"]["text"].startswith(":warning: Pipeline run")
