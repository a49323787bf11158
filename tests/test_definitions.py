"""The Dagster code location loads and keeps the contract's selections and defaults."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.definitions import defs
from sentinelops_pipelines.partitions import daily_partitions, five_minute_partitions

SPECS = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
GRAPH = defs.resolve_asset_graph()


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_lineage_starts_at_the_raw_events_table():
    assert SPECS["stripe_events"].group_name == "sources"
    assert {k.to_user_string() for k in GRAPH.get(dg.AssetKey("window_metrics")).parent_keys} == {
        "stripe_events"
    }
    assert {k.to_user_string() for k in GRAPH.get(dg.AssetKey("anomalies")).parent_keys} == {
        "window_metrics"
    }


def test_every_rules_asset_shares_the_5_minute_partitions_and_backfills_in_one_run():
    rules = [key for key, spec in SPECS.items() if spec.group_name == "rules"]
    assert set(rules) >= {"window_metrics", "anomalies"}
    for key in rules:
        node = GRAPH.get(dg.AssetKey(key))
        assert node.partitions_def == five_minute_partitions, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
    assert five_minute_partitions.get_first_partition_key() == "2026-01-01-00:00"


def test_the_contract_groups_exist():
    groups = {spec.group_name for spec in SPECS.values()}
    assert {"rules", "alerts", "reporting", "reconciliation"} <= groups
    reporting = [k for k, s in SPECS.items() if s.group_name == "reporting"]
    assert all(GRAPH.get(dg.AssetKey(k)).partitions_def == daily_partitions for k in reporting)


def test_every_schedule_and_sensor_is_on_by_default():
    # `make run` must watch without a click in the UI.
    schedules = list(defs.schedules or [])
    sensors = list(defs.sensors or [])
    assert schedules and sensors
    for schedule in schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
    for sensor in sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name
