"""The one place that assembles the SentinelOps Dagster code location."""

from __future__ import annotations

import dagster as dg

from sentinelops_pipelines.assets.sources import stripe_events

defs = dg.Definitions(assets=[stripe_events])
