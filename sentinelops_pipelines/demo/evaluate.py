"""The demo's evaluation: the rules assets over the windows it sent, in one Dagster run."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sentinelops.db import database_url
from sentinelops.settings import Settings
from sentinelops.windows import window_key
from sentinelops_pipelines.demo.output import DemoError, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    run_id: str
    recorded: bool  # in the stack's Dagster instance, so its UI shows the run
    windows: int
    opened: int
    extended: int


def evaluate(
    settings: Settings, first: datetime, last: datetime, verbose: bool = False
) -> Evaluation:
    """Run the rules over the windows [first, last] in one Dagster run, recorded in the
    stack's Dagster instance when `make run` made one (so it shows in the UI and the alert
    sensor delivers what it found). DemoError when the run fails."""
    # Imported here: Dagster takes seconds to load (the demo's first line should not wait for
    # it), and the assets warn as they load (silenced below unless --verbose).
    import dagster as dg

    home = Path(settings.sentinelops_home) / "dagster"
    recorded = (home / "dagster.yaml").exists()
    level = "WARNING" if verbose else "CRITICAL"
    with warnings.catch_warnings():
        if not verbose:  # Dagster warns about the beta and preview APIs the assets use
            for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
                warnings.simplefilter("ignore", category)
        from sentinelops_pipelines.assets.rules import anomalies, window_metrics
        from sentinelops_pipelines.assets.sources import stripe_events
        from sentinelops_pipelines.resources import PostgresResource, RulesResource
        from sentinelops_pipelines.slack import SlackResource

        try:
            instance = (
                dg.DagsterInstance.from_config(str(home))
                if recorded
                else dg.DagsterInstance.ephemeral()
            )
            with instance:
                result = dg.materialize(
                    [stripe_events, window_metrics, anomalies],
                    selection=[window_metrics, anomalies],
                    instance=instance,
                    raise_on_error=False,
                    # Quiet: a failure is reported as one line below, not Dagster's traces.
                    run_config={"loggers": {"console": {"config": {"log_level": level}}}},
                    resources={
                        # Hard-coded, not configured: a configured value is stored in the
                        # run's record, and this URL carries the embedded server's password.
                        "postgres": dg.ResourceDefinition.hardcoded_resource(
                            PostgresResource(database_url=database_url(settings))
                        ),
                        "rules": RulesResource(path=settings.rules_file),
                        "slack": SlackResource(),  # unused: the demo posts its own alerts
                    },
                    tags={
                        "dagster/asset_partition_range_start": window_key(first),
                        "dagster/asset_partition_range_end": window_key(last),
                        "sentinelops/reason": "demo",
                    },
                )
        # A command's boundary: whatever Dagster raised becomes one line (the traceback is
        # logged at DEBUG, for LOG_LEVEL=DEBUG with --verbose).
        except Exception as exc:
            log.debug("the rules evaluation raised", exc_info=True)
            raise DemoError(f"the rules evaluation failed: {first_line(exc)}") from None
    if not result.success:
        failures = result.get_step_failure_events()
        error = failures[0].step_failure_data.error if failures else None
        # Dagster wraps the asset's own exception (itself perhaps wrapping more): show that one.
        while error is not None and error.cause is not None and _is_dagsters(error.cls_name):
            error = error.cause
        why = first_line(error.message) if error else "see the run in the Dagster UI"
        raise DemoError(f"the rules evaluation failed (Dagster run {result.run_id}): {why}")
    # A range run records one materialization per window, each with the run's metadata.
    found = result.asset_materializations_for_node("anomalies")
    counts = {
        key: entry.value
        for key, entry in (found[0].metadata.items() if found else ())
        if isinstance(entry.value, int)
    }
    return Evaluation(
        run_id=result.run_id,
        recorded=recorded,
        windows=counts.get("windows_evaluated", 0),
        opened=counts.get("anomalies_opened", 0),
        extended=counts.get("anomalies_extended", 0),
    )


def _is_dagsters(name: str | None) -> bool:
    return (name or "").startswith("Dagster")
