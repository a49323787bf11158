"""Runs a killed stack left in progress, ended at the next `sentinelops up`.

The local run launcher has no health check for run workers, so Dagster's run monitoring never
notices a worker that died with the stack: its run would stay STARTED for good and hold one of
the queue's `max_concurrent_runs` slots, and after a few hard stops nothing would run at all.
Only safe while no run worker of this Dagster storage can be alive: `sentinelops up` calls it
before it starts the webserver and the daemon.
"""

from __future__ import annotations

import dagster as dg

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
FAILED_MESSAGE = (
    "Left running by a SentinelOps stack that stopped; marked failed by the next"
    " `sentinelops up`. Run retries may re-run it."
)
CANCELED_MESSAGE = (
    "Was being canceled when its SentinelOps stack stopped; marked canceled by the next"
    " `sentinelops up`."
)


def end_orphaned_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Fail every STARTING or STARTED run, cancel every CANCELING one; the runs as found."""
    found = list(
        instance.get_runs(
            filters=dg.RunsFilter(statuses=[*IN_PROGRESS, dg.DagsterRunStatus.CANCELING])
        )
    )
    for run in found:
        if run.status == dg.DagsterRunStatus.CANCELING:
            # Someone asked this run to stop: a failure would make run_retries start it again.
            # Canceled is also what Dagster's own cancel timeout ends such a run with.
            instance.report_run_canceled(run, message=CANCELED_MESSAGE)
        else:
            instance.report_run_failed(run, message=FAILED_MESSAGE)
    return found


def main() -> None:
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME
        ended = end_orphaned_runs(instance)
    for run in ended:
        outcome = "canceled" if run.status == dg.DagsterRunStatus.CANCELING else "failed"
        print(f"run {run.run_id} ({run.job_name}) was {run.status.value}: marked {outcome}")


if __name__ == "__main__":
    main()
