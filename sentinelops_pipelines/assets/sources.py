"""Source assets: tables written outside Dagster, where lineage starts."""

from __future__ import annotations

import dagster as dg

stripe_events = dg.AssetSpec(
    key="stripe_events",
    group_name="sources",
    description=(
        "Raw Stripe events in PostgreSQL (table stripe_events), written once per event id by the"
        " webhook service and by reconciliation."
    ),
    kinds={"postgres"},
    metadata={"table": "public.stripe_events", "written_by": "POST /api/v1/webhooks/stripe"},
)
