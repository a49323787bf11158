"""The rules backtest: incidents grouped as the product records them, a candidate compared with
the active rules over stored rollups, by the command and the Dagster job alike, writing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from sentinelops import cli
from sentinelops.settings import get_settings
from sentinelops_pipelines.backtest import compare, group_incidents
from sentinelops_pipelines.jobs import rules_backtest_job
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import default_rules_text
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.slack import SlackResource
from tests import streams
from tests.pipelines.test_rule_assets import run_range

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = "2026-03-02"
RANGE = ["--since", DAY, "--until", "2026-03-03"]
GAP = timedelta(minutes=30)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def finding(minutes: int, severity: str = "low", rule: str = "r", scope: str = "all") -> Finding:
    return Finding(rule, scope, severity, "t", at(minutes), {})  # type: ignore[arg-type]


def incidents(*spans: tuple[int, int, str], rule: str = "r") -> list:
    """One incident per (first window, last window, severity), in minutes from T0."""
    return group_incidents(
        [finding(m, sev, rule) for first, last, sev in spans for m in range(first, last + 1, 5)],
        GAP,
    )


class TestIncidents:
    @pytest.mark.parametrize(
        "breaches, expected",
        [
            pytest.param([(0, "low"), (5, "low")], [(0, 10, "low")], id="consecutive-windows"),
            pytest.param([(0, "low"), (35, "low")], [(0, 40, "low")],
                         id="a-gap-of-exactly-the-quiet-gap-extends-as-record-does"),
            pytest.param([(0, "low"), (40, "low")], [(0, 5, "low"), (40, 45, "low")],
                         id="past-the-quiet-gap-a-new-incident"),
            pytest.param([(0, "low"), (5, "high"), (10, "medium")], [(0, 15, "high")],
                         id="severity-is-the-highest-window"),
            pytest.param([(0, "medium"), (0, "low")], [(0, 5, "medium")],
                         id="a-window-judged-twice-keeps-its-worse-verdict"),
            pytest.param([(10, "low"), (0, "low")], [(0, 15, "low")], id="any-order"),
        ],
    )  # fmt: skip
    def test_breaches_group_as_the_product_records_them(self, breaches, expected):
        found = group_incidents([finding(m, s) for m, s in breaches], GAP)
        assert [(i.start, i.end, i.severity) for i in found] == [
            (at(a), at(b), s) for a, b, s in expected
        ]

    def test_rules_and_scopes_are_separate_incidents(self):
        found = group_incidents(
            [finding(0, rule="a"), finding(5, rule="b"), finding(5, rule="a", scope="usd")], GAP
        )
        assert [(i.rule, i.scope) for i in found] == [("a", "all"), ("a", "usd"), ("b", "all")]


class TestCompare:
    @pytest.mark.parametrize(
        "current, candidate, verdicts",
        [
            pytest.param([(0, 10, "low")], [(5, 20, "low")], [("same", "low", "low")],
                         id="overlapping-same-severity"),
            pytest.param([(0, 10, "low")], [(0, 10, "high")], [("changed", "low", "high")],
                         id="severity-changed"),
            pytest.param([], [(0, 10, "medium")], [("new", None, "medium")], id="candidate-only"),
            pytest.param([(0, 10, "medium")], [], [("gone", "medium", None)], id="current-only"),
            pytest.param([(0, 0, "low"), (60, 60, "medium")], [(0, 60, "medium")],
                         [("same", "medium", "medium")], id="two-merged-into-one-keep-the-highest"),
            pytest.param([(0, 0, "low")], [(60, 60, "low")],
                         [("gone", "low", None), ("new", None, "low")], id="no-overlap-in-time"),
        ],
    )  # fmt: skip
    def test_candidate_incidents_against_current_ones(self, current, candidate, verdicts):
        found = compare(incidents(*current), incidents(*candidate))
        assert [(d.verdict, d.current, d.candidate) for d in found] == verdicts

    def test_another_rule_is_never_a_match(self):
        found = compare(incidents((0, 10, "low")), incidents((0, 10, "low"), rule="other"))
        assert {(d.rule, d.verdict) for d in found} == {("r", "gone"), ("other", "new")}


# ---- over stored rollups --------------------------------------------------------------------


def rules_without_failure_spike(tmp_path: Path) -> Path:
    path = tmp_path / "no-failure-spike.toml"
    path.write_text(
        default_rules_text().replace(
            "[rules.payment_failure_spike]\n", "[rules.payment_failure_spike]\nenabled = false\n"
        )
    )
    return path


@pytest.fixture
def history(database_url: str) -> datetime:
    """Eight hours of steady payments with a 30-minute failure spike at 05:00, rolled up and
    evaluated by the packaged rules (so one payment_failure_spike anomaly is stored)."""
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    spike = T0 + timedelta(hours=5)
    streams.store(database_url, streams.failure_spike(spike, minutes=30))
    assert run_range(database_url, T0, T0 + timedelta(hours=7, minutes=55)).success
    return spike


@pytest.fixture
def sentinelops(database_url, tmp_path, monkeypatch, capsys):
    """`sentinelops …` in-process on the test database: (exit status, stdout, stderr)."""

    def run(*args: str, rules_file: Path | None = None) -> tuple[int, str, str]:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("SENTINELOPS_HOME", str(tmp_path))
        if rules_file:
            monkeypatch.setenv("SENTINELOPS_RULES_FILE", str(rules_file))
        get_settings.cache_clear()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(args))
        out, err = capsys.readouterr()
        return exit_.value.code, out, err  # type: ignore[return-value]

    yield run
    get_settings.cache_clear()


def day_row(out: str, rule: str, day: str = DAY) -> dict[str, int]:
    """The table's row for `rule` on `day`, by column name."""
    lines = out.splitlines()
    header = next(line.split() for line in lines if line.split()[:2] == ["rule", "day"])
    row = next(line.split() for line in lines if line.split()[:2] == [rule, day])
    return {name: int(value) for name, value in zip(header[2:], row[2:], strict=True)}


def written(db) -> list:
    """Everything a backtest must leave as it found it."""
    return [
        db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("anomalies", "anomaly_windows", "anomaly_history", "notifications",
                      "window_metrics")
    ]  # fmt: skip


class TestBacktestCommand:
    def test_a_rule_turned_off_shows_its_incident_gone_and_writes_nothing(
        self, sentinelops, history, db, tmp_path
    ):
        before = written(db)

        status, out, err = sentinelops(
            "rules", "backtest", "--rules", str(rules_without_failure_spike(tmp_path)), *RANGE
        )

        assert status == 0, err
        assert day_row(out, "payment_failure_spike") == {
            "stored": 1, "current": 1, "candidate": 0, "new": 0, "gone": 1, "changed": 0,
        }  # fmt: skip
        assert f"{history:%Y-%m-%d %H:%M}" in out  # the gone incident is listed
        assert "gone high" in out
        assert written(db) == before

    def test_a_candidate_that_raises_more_shows_it_new(self, sentinelops, history, tmp_path):
        # The active rules have the rule off; the candidate (the packaged file) turns it on.
        packaged = tmp_path / "packaged.toml"
        packaged.write_text(default_rules_text())

        status, out, err = sentinelops(
            "rules", "backtest", "--rules", str(packaged), *RANGE,
            rules_file=rules_without_failure_spike(tmp_path),
        )  # fmt: skip

        assert status == 0, err
        row = day_row(out, "payment_failure_spike")
        assert (row["stored"], row["current"], row["candidate"], row["new"]) == (1, 0, 1, 1)

    def test_the_active_rules_as_candidate_change_nothing(self, sentinelops, history, tmp_path):
        same = tmp_path / "same.toml"
        same.write_text(default_rules_text())

        status, out, err = sentinelops("rules", "backtest", "--rules", str(same), *RANGE, "--json")

        assert status == 0, err
        report = json.loads(out)
        assert report["windows"] == 96 and report["differences"] == []
        totals = {r["rule"]: r for r in report["rows"] if r["day"] == "total"}
        assert totals["payment_failure_spike"]["current"] == 1
        assert totals["payment_failure_spike"]["candidate"] == 1

    @pytest.mark.parametrize(
        "content, args, message",
        [
            pytest.param(None, [], "cannot read rules file", id="missing-file"),
            pytest.param("rules = [", [], "invalid rule definitions", id="not-toml"),
            pytest.param("[rules.x]\nkind = 'nonsense'\n", [], "invalid rule definitions",
                         id="not-a-rule-book"),
            pytest.param("", ["--since", "2026-03-03", "--until", "2026-03-02"],
                         "must be before", id="since-after-until"),
            pytest.param("", ["--since", "yesterday"], "neither YYYY-MM-DD", id="unparsable-date"),
        ],
    )  # fmt: skip
    def test_bad_input_is_one_line_on_stderr_and_exit_2(
        self, sentinelops, db, tmp_path, content, args, message
    ):
        path = tmp_path / "candidate.toml"
        if content is not None:
            path.write_text(content or default_rules_text())

        status, out, err = sentinelops("rules", "backtest", "--rules", str(path), *args)

        assert status == 2
        assert out == ""
        assert err.count("\n") == 1 and message in err, err

    def test_the_backtest_loads_no_dagster(self):
        # The command stays light: Dagster takes seconds to import.
        code = "import sys, sentinelops_pipelines.backtest; print('dagster' in sys.modules)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.stdout.strip() == "False", done.stderr


class TestBacktestJob:
    def run_job(self, database_url: str, **config: str) -> dg.ExecuteInProcessResult:
        return rules_backtest_job.execute_in_process(
            run_config={"ops": {"backtest_rules": {"config": config}}},
            resources={"postgres": PostgresResource(database_url=database_url),
                       "rules": RulesResource(), "slack": SlackResource()},
            raise_on_error=False,
        )  # fmt: skip

    def test_the_job_reports_what_the_command_prints(
        self, sentinelops, database_url, history, tmp_path
    ):
        candidate = rules_without_failure_spike(tmp_path)
        _, out, _ = sentinelops("rules", "backtest", "--rules", str(candidate), *RANGE, "--json")

        result = self.run_job(
            database_url, rules_toml=candidate.read_text(), since=DAY, until="2026-03-03"
        )

        assert result.success
        report = result.output_for_node("backtest_rules")
        command = json.loads(out)
        assert report["rows"] == command["rows"]
        assert report["differences"] == command["differences"]
        step = next(
            e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"
        ).event_specific_data
        table = step.metadata["table"].value  # type: ignore[union-attr]
        assert "| payment_failure_spike | 2026-03-02 | 1 | 1 | 0 | 0 | 1 | 0 |" in table

    def test_the_code_location_takes_the_readme_launchpad_config(self):
        from sentinelops_pipelines.definitions import defs

        readme = {"rules_file": "/path/to/my-rules.toml", "since": "2026-11-01"}
        dg.validate_run_config(
            defs.resolve_job_def("rules_backtest"),
            {"ops": {"backtest_rules": {"config": readme}}},
        )

    def test_an_invalid_candidate_fails_the_run_and_says_why(self, database_url, db):
        result = self.run_job(database_url, rules_toml="rules = [")
        assert not result.success
        failure = result.failure_data_for_node("backtest_rules")
        assert "invalid rule definitions in rules_toml" in str(failure)
