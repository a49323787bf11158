"""The Dagster code location loads, and lineage starts at the raw events table."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.definitions import defs


def test_definitions_load_and_every_job_resolves():
    dg.Definitions.validate_loadable(defs)
    for job in defs.resolve_all_job_defs():
        assert job.name


def test_stripe_events_is_the_source_asset():
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert specs["stripe_events"].group_name == "sources"
