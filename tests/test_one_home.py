"""Each shared definition has one home (issue 13): the 5-minute windows, their partition keys and
their SQL in sentinelops/windows.py; the severities and their order in sentinelops/severity.py,
with their SQL twin `severity_rank()` in migration 0007; the demo anomalies' test in SQL,
`is_demo()`, in the same migration.

Read from the source of the three production packages, so a second spelling fails the suite
rather than drifting from the first. Landed migrations (0001-0006) are history, never edited,
and the rules file names severities as data: neither is read.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from sentinelops import windows
from sentinelops.severity import HIGHEST_FIRST, LOWEST, LOWEST_FIRST, higher, rank

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sentinelops", "sentinelops_pipelines", "webhook_service")
LANDED = 6  # the last migration that landed before these homes existed

WINDOWS = "sentinelops/windows.py"
SEVERITY = "sentinelops/severity.py"
SQL_HOME = "sentinelops/migrations/0007_severity_rank_and_is_demo.sql"

NAMES = "|".join(LOWEST_FIRST)
# What each home owns, as it is spelled anywhere else: (what, pattern, home).
SPELLINGS = [
    ("window key format", re.compile(re.escape(windows.KEY_FORMAT)), WINDOWS),
    ("date_bin(", re.compile(r"date_bin\s*\(", re.IGNORECASE), WINDOWS),
    ("window width in SQL", re.compile(r"'5\s*min(ute)?s?'", re.IGNORECASE), WINDOWS),
    ("window floor", re.compile(r"minute\s*%\s*5\b|timedelta\(\s*minutes\s*=\s*5\b"), WINDOWS),
    ("window cron", re.compile(re.escape(windows.CRON)), WINDOWS),
    ("severity in SQL", re.compile(rf"'({NAMES})'"), SQL_HOME),
    ("demo test in SQL", re.compile(r"'_demo'"), SQL_HOME),
]
ORDER = "severity order"  # a literal listing severities: a tuple, a Literal[...], a rank table


@dataclass(frozen=True, order=True)
class Stray:
    path: str
    line: int
    what: str


def sources(root: Path) -> list[Path]:
    """The production source: every module, and the migrations that have not landed yet."""
    found = []
    for package in PACKAGES:
        found += sorted((root / package).rglob("*.py"))
        for sql in sorted((root / package).rglob("*.sql")):
            version = sql.name.split("_", 1)[0]
            if not (version.isdigit() and int(version) <= LANDED):
                found.append(sql)
    return found


def _severity_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and node.value in LOWEST_FIRST:
        return node.value
    return None


def _orders(tree: ast.AST) -> list[int]:
    """Lines of literals that list two or more severities: sequences and Literal[...] (an order
    or the set), or dicts of numbers keyed by them (a rank table, counters in an order)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            named = {_severity_name(e) for e in node.elts} - {None}
        elif isinstance(node, ast.Dict) and all(
            isinstance(v, ast.Constant) and isinstance(v.value, int | float) for v in node.values
        ):
            named = {_severity_name(k) for k in node.keys if k is not None} - {None}
        else:
            continue
        if len(named) >= 2:
            lines.append(node.lineno)
    return lines


def strays(root: Path) -> list[Stray]:
    found = []
    for path in sources(root):
        name = path.relative_to(root).as_posix()
        text = path.read_text()
        for what, pattern, home in SPELLINGS:
            if name != home:
                found += [
                    Stray(name, text.count("\n", 0, m.start()) + 1, what)
                    for m in pattern.finditer(text)
                ]
        if path.suffix == ".py" and name != SEVERITY:
            found += [Stray(name, line, ORDER) for line in _orders(ast.parse(text))]
    return sorted(found)


class TestOneHome:
    def test_nothing_is_spelled_outside_its_home(self):
        assert strays(ROOT) == []


# Each kind of stray, planted in a copy of a package: the scan must see it (it once was each
# of these, in the files named).
PLANTED = [
    pytest.param("schedules.py", 'key = start.strftime("%Y-%m-%d-%H:%M")\n',
                 "window key format", id="key-format-in-schedules"),
    pytest.param("storage/metrics.py",
                 "SQL = \"SELECT date_bin('5 minutes', created, TIMESTAMPTZ '2000-01-01')\"\n",
                 "date_bin(", id="date-bin-in-metrics"),
    pytest.param("coverage.sql", "SELECT now() - interval '5 minutes';\n",
                 "window width in SQL", id="width-in-a-new-sql-file"),
    pytest.param("rules/gap.py", "floor = m - timedelta(minutes=m.minute % 5)\n",
                 "window floor", id="floor-in-gap"),
    pytest.param("partitions.py", 'CRON = "*/5 * * * *"\n', "window cron", id="cron"),
    pytest.param("storage/notifications.py",
                 "SQL = \"array_position(ARRAY['low', 'medium', 'high'], severity)\"\n",
                 "severity in SQL", id="array-in-notifications"),
    pytest.param("anomalies/repository.py",
                 "RANK = \"CASE severity WHEN 'high' THEN 3 ELSE 1 END\"\n",
                 "severity in SQL", id="case-in-repository"),
    pytest.param("rules/model.py", 'RANK = {"low": 1, "medium": 2, "high": 3}\n', ORDER,
                 id="rank-table-in-model"),
    pytest.param("summary/facts.py", 'SEVERITIES = ("high", "medium", "low")\n', ORDER,
                 id="tuple-in-facts"),
    pytest.param("rules/definitions.py", 'S = Literal["low", "high"]\n', ORDER,
                 id="literal-in-definitions"),
    pytest.param("storage/summaries.py",
                 "NOT_DEMO = \"coalesce(evidence->>'_demo', 'false') <> 'true'\"\n",
                 "demo test in SQL", id="demo-test-in-summaries"),
]  # fmt: skip


class TestTheScan:
    @pytest.mark.parametrize(("module", "source", "what"), PLANTED)
    def test_sees_a_planted_stray(self, tmp_path, module, source, what):
        path = tmp_path / "sentinelops_pipelines" / module
        path.parent.mkdir(parents=True)
        path.write_text(source)
        assert Stray(f"sentinelops_pipelines/{module}", 1, what) in strays(tmp_path)

    def test_reads_new_migrations_but_not_landed_ones(self, tmp_path):
        migrations = tmp_path / "sentinelops" / "migrations"
        migrations.mkdir(parents=True)
        line = "CHECK (severity IN ('low', 'medium', 'high'))\n"
        (migrations / "0002_rules.sql").write_text(line)
        (migrations / "0008_more.sql").write_text(line)
        found = {(s.path, s.what) for s in strays(tmp_path)}
        assert found == {("sentinelops/migrations/0008_more.sql", "severity in SQL")}

    def test_leaves_single_names_and_the_rules_file_alone(self, tmp_path):
        package = tmp_path / "sentinelops_pipelines"
        package.mkdir()
        (package / "rules.toml").write_text('severity_at = { "low" = 1, "high" = 5 }\n')
        (package / "defaults.py").write_text(
            'severity_both = "high"\nICON = {"low": ":yellow:", "high": ":red:"}\n'
        )
        assert strays(tmp_path) == []


class TestWindows:
    def test_a_key_names_its_window_as_the_contract_says(self):
        assert windows.window_key(datetime(2026, 11, 29, 13, 5, tzinfo=UTC)) == "2026-11-29-13:05"

    def test_the_partitions_are_the_windows(self):
        from sentinelops_pipelines.partitions import five_minute_partitions

        # A window's key names a partition that spans exactly that window.
        start = windows.window_floor(five_minute_partitions.start + timedelta(days=3, minutes=7))
        span = five_minute_partitions.time_window_for_partition_key(windows.window_key(start))
        assert (span.start, span.end) == (start, start + windows.WINDOW)

    def test_python_and_sql_bin_alike(self, database_url):
        moments = [
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 4, 59, 999999, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 5, 0, 1, tzinfo=UTC),
            datetime(2026, 11, 29, 13, 7, 30, tzinfo=UTC) + timedelta(hours=5, minutes=30),
        ]
        sql = f"SELECT {windows.BIN.format(col='m')} FROM unnest(%s::timestamptz[]) AS m"
        with psycopg.connect(database_url) as conn:
            binned = [row[0] for row in conn.execute(sql, (moments,))]
        assert binned == [windows.window_floor(m) for m in moments]


class TestSeverity:
    def test_python_orders_lowest_first(self):
        assert LOWEST_FIRST == ("low", "medium", "high")
        assert HIGHEST_FIRST == LOWEST_FIRST[::-1] and LOWEST == "low"
        assert [rank(s) for s in LOWEST_FIRST] == [1, 2, 3]
        assert higher("medium", "high") == higher("high", "low") == "high"

    def test_sql_ranks_as_python_does(self, database_url):
        names = [*LOWEST_FIRST, "critical", None]
        with psycopg.connect(database_url) as conn:
            ranks = conn.execute(
                "SELECT array_agg(severity_rank(s) ORDER BY i)"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS u(s, i)",
                (names,),
            ).fetchone()[0]
        assert ranks == [rank(s) for s in LOWEST_FIRST] + [None, None]

    def test_the_columns_take_exactly_these_names(self, database_url):
        insert = (
            "INSERT INTO anomalies (rule, scope, severity, title, window_start, window_end,"
            " evidence) VALUES ('r', %(s)s, %(s)s, 't', now(), now() + interval '1 hour', '{}')"
        )
        with psycopg.connect(database_url) as conn:
            for name in LOWEST_FIRST:
                conn.execute(insert, {"s": name})
            with pytest.raises(psycopg.errors.CheckViolation) as refused:
                conn.execute(insert, {"s": "critical"})
            conn.rollback()
        assert refused.value.diag.constraint_name == "anomalies_severity_check"


@pytest.mark.parametrize(
    ("evidence", "demo"),
    [
        pytest.param('{"_demo": true}', True, id="seeded-demo"),
        pytest.param('{"_demo": "true"}', True, id="marked-as-text"),
        pytest.param('{"_demo": false}', False, id="marked-false"),
        pytest.param("{}", False, id="real-anomaly"),
    ],
)
def test_is_demo_reads_the_seed_marker(database_url, evidence, demo):
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT is_demo(%s::jsonb)", (evidence,)).fetchone()[0] is demo
