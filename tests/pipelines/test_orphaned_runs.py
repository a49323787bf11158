"""Runs a killed stack left in progress are ended by the next `sentinelops up`, and the local
dagster.yaml has Dagster monitor and retry runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.instance.config import dagster_instance_config
from psycopg import sql

from sentinelops.postgres import ensure_dagster_database, with_database
from sentinelops_pipelines.orphans import end_orphaned_runs

ROOT = Path(__file__).resolve().parents[2]
Status = dg.DagsterRunStatus
QUIET = {"telemetry": {"enabled": False}}


@dg.op
def step() -> None:
    pass


@dg.job
def tick_job() -> None:
    step()


def run_in(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    if status == Status.SUCCESS:
        return tick_job.execute_in_process(instance=instance).run_id
    return instance.create_run_for_job(tick_job, status=status).run_id


def status_of(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def ended(instance: dg.DagsterInstance) -> list[str]:
    return [run.run_id for run in end_orphaned_runs(instance)]


class TestFailOrphanedRuns:
    @pytest.fixture
    def instance(self, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.local_temp(str(tmp_path), QUIET) as instance:
            yield instance

    def test_runs_left_in_progress_fail_and_the_rest_are_untouched(self, instance):
        started, starting = run_in(instance, Status.STARTED), run_in(instance, Status.STARTING)
        done, failed = run_in(instance, Status.SUCCESS), run_in(instance, Status.FAILURE)

        assert sorted(ended(instance)) == sorted([started, starting])

        assert status_of(instance, started) == Status.FAILURE
        assert status_of(instance, starting) == Status.FAILURE
        assert status_of(instance, done) == Status.SUCCESS
        assert status_of(instance, failed) == Status.FAILURE
        assert ended(instance) == []

    def test_a_run_being_canceled_ends_canceled_so_it_is_not_retried(self, instance):
        canceling = run_in(instance, Status.CANCELING)

        assert ended(instance) == [canceling]
        assert status_of(instance, canceling) == Status.CANCELED


def test_the_local_dagster_yaml_monitors_runs_it_can_check():
    # Dagster validates the file as it would at start-up. Resuming a crashed run in place needs a
    # launcher that can check workers; with the local one, a resume count above 0 keeps the
    # whole instance from starting. (Retries are shown end to end below: dagster/will_retry.)
    config, _ = dagster_instance_config(str(ROOT))
    assert config["run_monitoring"]["enabled"]
    assert config["run_monitoring"]["max_resume_run_attempts"] == 0


@pytest.fixture
def stack(server_url: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A DAGSTER_HOME as `up` writes it, its DATABASE_URL, and its own Dagster database."""
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    app_url = with_database(server_url, f"sentinelops_orphans_{os.getpid()}")
    yield home, app_url, ensure_dagster_database(app_url)
    with psycopg.connect(server_url, autocommit=True) as admin:
        name = f"sentinelops_orphans_{os.getpid()}_dagster"
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_up_s_command_fails_the_runs_left_in_the_stack_s_storage(stack, tmp_path):
    home, app_url, dagster_url = stack
    # The same database the stack's dagster.yaml derives from DATABASE_URL, with Dagster's own
    # storage class (the project's sets process-wide environment variables).
    overrides = {**QUIET, "storage": {"postgres": {"postgres_url": dagster_url}}}
    (tmp_path / "test").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "test"), overrides=overrides) as instance:
        started, done = run_in(instance, Status.STARTED), run_in(instance, Status.SUCCESS)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
        env.update(DAGSTER_HOME=str(home), DATABASE_URL=app_url)

        result = subprocess.run(
            [sys.executable, "-m", "sentinelops_pipelines.orphans"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout == f"run {started} (tick_job) was STARTED: marked failed\n"
        failed = instance.get_run_by_id(started)
        assert failed is not None and failed.status == Status.FAILURE
        # The stack's run_retries (from its dagster.yaml) will re-run it.
        assert failed.tags.get("dagster/will_retry") == "true"
        assert status_of(instance, done) == Status.SUCCESS
