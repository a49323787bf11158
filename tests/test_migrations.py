"""Migrations build the schema from an empty database, once, even when two processes race; each
leaves the tables, keys and constraints the code and its users rely on; applying them again
changes nothing."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from sentinelops.db import migrate, migrations
from sentinelops.postgres import with_database

# The catalog as PostgreSQL renders it: every column (type, NOT NULL, default), constraint,
# index and function the migrations left behind.
CATALOG = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
           AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), prosrc
          FROM pg_proc WHERE pronamespace = 'public'::regnamespace""",
}


@dataclass(frozen=True)
class Schema:
    """The catalog's rows, by CATALOG's keys."""

    rows: dict[str, frozenset[tuple]]

    @classmethod
    def read(cls, url: str) -> Schema:
        with psycopg.connect(url) as conn:
            return cls({k: frozenset(conn.execute(q).fetchall()) for k, q in CATALOG.items()})

    def index(self, name: str) -> str:
        (text,) = [text for _, n, text in self.rows["indexes"] if n == name]
        return text


@dataclass(frozen=True)
class Raced:
    url: str
    results: list[list[str]]


@pytest.fixture(scope="module")
def raced(server_url: str) -> Iterator[Raced]:
    """An empty database that two processes migrated at the same moment."""
    name = f"sentinelops_migrations_raced_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(url))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    yield Raced(url, results)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def schema(raced: Raced) -> Schema:
    return Schema.read(raced.url)


def test_two_concurrent_migrations_apply_everything_exactly_once(raced):
    every = [m.name for m in migrations()]
    assert sorted(raced.results, key=len) == [[], every]
    with psycopg.connect(raced.url) as conn:
        recorded = conn.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()
    assert [name for (name,) in recorded] == every


def test_applying_them_again_changes_nothing(raced, schema):
    with psycopg.connect(raced.url) as conn:
        before = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
        coverage = conn.execute("SELECT scanned_xid FROM coverage_state").fetchall()

    assert migrate(raced.url) == []

    assert Schema.read(raced.url) == schema
    with psycopg.connect(raced.url) as conn:
        assert conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall() == before
        assert conn.execute("SELECT scanned_xid FROM coverage_state").fetchall() == coverage


def test_an_edited_landed_migration_is_refused(raced):
    edit = "UPDATE schema_migrations SET checksum = %s WHERE version = 1"
    with psycopg.connect(raced.url, autocommit=True) as conn:
        (landed,) = conn.execute(
            "SELECT checksum FROM schema_migrations WHERE version = 1"
        ).fetchone()
        conn.execute(edit, ("edited",))
        try:
            with pytest.raises(RuntimeError, match="changed after it was applied"):
                migrate(raced.url)
        finally:
            conn.execute(edit, (landed,))  # as it landed, for the tests that follow


def test_every_migration_has_its_schema_test():
    tested = {int(name.split("_")[1]) for name in dir(TestEachMigrationLeaves)
              if name.startswith("test_")}  # fmt: skip
    assert {m.version for m in migrations()} == tested


@pytest.fixture
def scratch(raced: Raced) -> Iterator[psycopg.Connection]:
    """A connection to the migrated database in one transaction, rolled back at the end."""
    with psycopg.connect(raced.url) as conn, conn.transaction(force_rollback=True):
        yield conn


def refusal(conn: psycopg.Connection, query: str, params: tuple = ()) -> str | None:
    """The integrity error PostgreSQL refuses the statement with, None if it is accepted."""
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the connection usable
            conn.execute(query, params)
    except psycopg.errors.IntegrityError as exc:
        return type(exc).__name__
    return None


EVENT = (
    "INSERT INTO stripe_events (id, type, created, livemode, payload)"
    " VALUES (%s, 'charge.failed', now(), false, '{}')"
)
ANOMALY = (
    "INSERT INTO anomalies (rule, severity, status, title, window_start, window_end, evidence)"
    " VALUES ('refund_spike', %s, %s, 'Refunds 9x usual', now(), now() + %s, '{}')"
)
FIVE_MINUTES = timedelta(minutes=5)


def add_anomaly(conn: psycopg.Connection) -> int:
    return conn.execute(ANOMALY + " RETURNING id", ("high", "open", FIVE_MINUTES)).fetchone()[0]


class TestEachMigrationLeaves:
    """What each migration adds and the code or its users rely on, named test_<version>_…: the
    keys that make re-runs no-ops, the checks that keep bad rows out, the indexes queries use.
    Constraints are shown by what they refuse, so a later migration may rewrite one freely."""

    def test_0001_each_stripe_event_once_and_every_rejection(self, scratch, schema):
        assert refusal(scratch, EVENT, ("evt_1",)) is None
        assert refusal(scratch, EVENT, ("evt_1",)) == "UniqueViolation"
        assert refusal(scratch, EVENT, ("ch_1",)) == "CheckViolation"  # not an event id
        stored = scratch.execute(
            "SELECT source, deliveries, received_at = now() FROM stripe_events"
        ).fetchall()
        assert stored == [("webhook", 1, True)]
        assert refusal(scratch, "UPDATE stripe_events SET source = 'csv'") == "CheckViolation"
        assert "(created, id)" in schema.index("stripe_events_created_idx")
        assert "(type, created, id)" in schema.index("stripe_events_type_created_idx")
        assert "(received_at)" in schema.index("stripe_events_received_at_idx")

        rejection = (
            "INSERT INTO webhook_rejections (reason, body_size, excerpt) VALUES (%s, 10, %s)"
        )
        assert refusal(scratch, rejection, ("signature_mismatch", "x" * 256)) is None
        assert refusal(scratch, rejection, ("too_large", None)) is None
        assert refusal(scratch, rejection, ("bored", None)) == "CheckViolation"
        assert refusal(scratch, rejection, ("malformed_json", "x" * 257)) == "CheckViolation"
        assert "(received_at)" in schema.index("webhook_rejections_received_at_idx")

    def test_0002_rollups_and_one_anomaly_per_incident(self, scratch, schema):
        window = "INSERT INTO window_metrics (window_start, payments_failed) VALUES (%s, 3)"
        start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        assert refusal(scratch, window, (start,)) is None
        assert refusal(scratch, window, (start,)) == "UniqueViolation"  # one row per window
        amounts = (
            "INSERT INTO window_amounts (currency, window_start, payments, amount_sum,"
            " amount_max, max_event_id, log_amount_sum) VALUES ('eur', %s, 1, 5, 5, 'evt_1', 1)"
        )
        assert refusal(scratch, amounts, (start,)) is None
        assert refusal(scratch, amounts, (start,)) == "UniqueViolation"

        assert refusal(scratch, ANOMALY, ("high", "open", FIVE_MINUTES)) is None
        assert refusal(scratch, ANOMALY, ("critical", "open", FIVE_MINUTES)) == "CheckViolation"
        assert refusal(scratch, ANOMALY, ("high", "snoozed", FIVE_MINUTES)) == "CheckViolation"
        assert refusal(scratch, ANOMALY, ("high", "open", timedelta())) == "CheckViolation"
        anomaly_id = add_anomaly(scratch)
        assert scratch.execute(
            "SELECT status, detected_at = now() FROM anomalies WHERE id = %s", (anomaly_id,)
        ).fetchone() == ("open", True)

        breach = (  # the key that makes re-evaluating a window a no-op
            "INSERT INTO anomaly_windows (rule, scope, window_start, anomaly_id, severity,"
            " evidence) VALUES ('refund_spike', 'all', %s, %s, 'high', '{}')"
        )
        assert refusal(scratch, breach, (start, anomaly_id)) is None
        assert refusal(scratch, breach, (start, anomaly_id)) == "UniqueViolation"
        history = (
            "INSERT INTO anomaly_history (anomaly_id, from_status, to_status, actor, note)"
            " VALUES (%s, NULL, 'open', 'rules', NULL)"
        )
        assert refusal(scratch, history, (anomaly_id,)) is None
        assert refusal(scratch, history, (anomaly_id + 1000,)) == "ForeignKeyViolation"
        scratch.execute("DELETE FROM anomalies WHERE id = %s", (anomaly_id,))
        assert scratch.execute(  # an anomaly's windows and history go with it
            "SELECT (SELECT count(*) FROM anomaly_windows), (SELECT count(*) FROM anomaly_history)"
        ).fetchone() == (0, 0)
        assert "WHERE (status <> 'resolved'::text)" in schema.index("anomalies_incident_idx")
        assert "(detected_at, id)" in schema.index("anomalies_detected_idx")

    def test_0003_one_notification_per_anomaly_change_and_one_summary_per_day(self, scratch):
        summary = (
            "INSERT INTO daily_summaries (date, facts, overall, highlights, watch, text)"
            " VALUES ('2026-03-09', '{}', 'A calm day.', %s, '[]', 'text')"
        )
        assert refusal(scratch, summary, ('"not a list"',)) == "CheckViolation"
        assert refusal(scratch, summary, ('["1,728 payments"]',)) is None
        assert refusal(scratch, summary, ("[]",)) == "UniqueViolation"  # one per day

        anomaly_id = add_anomaly(scratch)
        opened = "INSERT INTO notifications (kind, anomaly_id, severity) VALUES (%s, %s, 'high')"
        assert refusal(scratch, opened, ("opened", anomaly_id)) is None
        assert refusal(scratch, opened, ("opened", anomaly_id)) == "UniqueViolation"
        assert refusal(scratch, opened, ("escalated", anomaly_id)) is None
        day = (
            "INSERT INTO notifications (kind, summary_date) VALUES ('daily_summary', '2026-03-09')"
        )
        assert refusal(scratch, day) is None
        assert refusal(scratch, day) == "UniqueViolation"
        assert scratch.execute(
            "SELECT DISTINCT channel, status, attempts FROM notifications"
        ).fetchall() == [("slack", "pending", 0)]
        sent_unstamped = "UPDATE notifications SET status = 'sent'"
        assert refusal(scratch, sent_unstamped) == "CheckViolation"

    def test_0004_a_reconciliation_watermark_and_the_events_it_stored(self, scratch, schema):
        watermark = (
            "INSERT INTO reconciliation_state (listed_until, last_run_at) VALUES (now(), now())"
        )
        assert refusal(scratch, watermark) is None
        assert refusal(scratch, watermark) == "UniqueViolation"  # one row
        found = "INSERT INTO reconciled_events (event_id) VALUES (%s)"
        assert refusal(scratch, found, ("evt_never_stored",)) == "ForeignKeyViolation"
        scratch.execute(EVENT, ("evt_missed",))
        assert refusal(scratch, found, ("evt_missed",)) is None
        assert "WHERE (reported_at IS NULL)" in schema.index("reconciled_events_unreported_idx")

    def test_0005_coverage_found_late_and_failed_notifications(self, scratch, schema):
        scratch.execute(EVENT, ("evt_1",))
        assert scratch.execute(  # the storing transaction, as the coverage scan reads it
            "SELECT ingest_xid = pg_current_xact_id()::text::bigint FROM stripe_events"
        ).fetchone() == (True,)
        assert "USING brin (ingest_xid)" in schema.index("stripe_events_ingest_xid_idx")
        assert scratch.execute(
            "SELECT snapshot_covers(pg_current_snapshot(), NULL),"
            "       snapshot_covers(pg_current_snapshot(), pg_current_snapshot())"
        ).fetchone() == (True, True)
        scratch.execute(
            "INSERT INTO window_metrics (window_start, rolled_snapshot) VALUES"
            " (now(), pg_current_snapshot())"
        )
        assert scratch.execute("SELECT scanned_xid FROM coverage_state").fetchall() == [(0,)]
        assert refusal(scratch, "INSERT INTO coverage_state (scanned_xid) VALUES (1)") == (
            "UniqueViolation"
        )

        anomaly_id = add_anomaly(scratch)
        assert scratch.execute(
            "SELECT found_late FROM anomalies WHERE id = %s", (anomaly_id,)
        ).fetchone() == (False,)
        catch_up = (
            "INSERT INTO notifications (kind, payload, dedupe_key)"
            " VALUES ('catch_up', '[1]', 'catch-up:1')"
        )
        assert refusal(scratch, catch_up) is None
        assert refusal(scratch, catch_up) == "UniqueViolation"
        assert (
            refusal(scratch, "INSERT INTO notifications (kind) VALUES ('catch_up')")
            == "CheckViolation"
        )
        failed = "UPDATE notifications SET status = 'failed', failed_at = %s"
        assert refusal(scratch, failed, (None,)) == "CheckViolation"
        assert refusal(scratch, failed, (datetime.now(UTC),)) is None

    def test_0006_summaries_say_why_an_ai_answer_was_refused(self, scratch):
        summary = (
            "INSERT INTO daily_summaries (date, facts, overall, highlights, watch, text,"
            " ai_error) VALUES (%s, '{}', 'A calm day.', '[]', '[]', 'text', %s)"
        )
        reasons = ["ai_not_configured", "ai_numeric_mismatch", "ai_refused_mention",
                   "ai_refused_link", "ai_refused_markup", "ai_wrong_direction"]  # fmt: skip
        for n, reason in enumerate(reasons):
            assert refusal(scratch, summary, (date(2026, 3, n + 1), reason)) is None, reason
        assert refusal(scratch, summary, (date(2026, 4, 1), "ai_bored")) == "CheckViolation"

    def test_0007_severities_rank_in_sql_and_demo_anomalies_are_known(self, scratch):
        assert scratch.execute(
            "SELECT severity_rank('low'), severity_rank('medium'), severity_rank('high'),"
            "       severity_rank('critical')"
        ).fetchone() == (1, 2, 3, None)
        assert scratch.execute(
            """SELECT is_demo('{"_demo": true}'), is_demo('{}'), is_demo('{"_demo": "no"}')"""
        ).fetchone() == (True, False, False)
        anomaly_id = add_anomaly(scratch)
        breach = (
            "INSERT INTO anomaly_windows (rule, scope, window_start, anomaly_id, severity,"
            " evidence) VALUES ('refund_spike', 'all', now(), %s, %s, '{}')"
        )
        assert refusal(scratch, breach, (anomaly_id, "critical")) == "CheckViolation"
        notification = (
            "INSERT INTO notifications (kind, anomaly_id, severity) VALUES ('opened', %s, %s)"
        )
        assert refusal(scratch, notification, (anomaly_id, "critical")) == "CheckViolation"

    def test_0008_amount_rollups_keep_the_squares_of_log_amounts(self, scratch):
        older = (  # a row as rolled up before 0008: its squares stay unknown
            "INSERT INTO window_amounts (currency, window_start, payments, amount_sum,"
            " amount_max, max_event_id, log_amount_sum) VALUES ('eur', now(), 1, 5, 5, 'e', 1)"
        )
        assert refusal(scratch, older) is None
        squares = "SELECT log_amount_sq_sum FROM window_amounts"
        assert scratch.execute(squares).fetchone() == (None,)
        scratch.execute("UPDATE window_amounts SET log_amount_sq_sum = 2.5")
        assert scratch.execute(
            "SELECT log_amount_sq_sum, pg_typeof(log_amount_sq_sum)::text FROM window_amounts"
        ).fetchone() == (2.5, "double precision")

    def test_0009_failed_payments_with_processing_errors_are_counted_apart(self, scratch):
        scratch.execute("INSERT INTO window_metrics (window_start) VALUES (now())")
        assert scratch.execute(
            "SELECT payments_failed_processing FROM window_metrics"
        ).fetchone() == (0,)
        assert refusal(scratch, "UPDATE window_metrics SET payments_failed_processing = NULL")

    def test_0010_one_reading_per_rule_scope_measure_and_window(self, scratch, schema):
        reading = (
            "INSERT INTO rule_readings (rule, scope, measure, window_start, label, observed,"
            " expected, bound, bound_kind) VALUES ('payment_failure_spike', 'all', 'failed_30m',"
            " '2026-05-01 12:00+00', 'failed payments in 30 min', 12, 1.5, %s, %s)"
        )
        assert refusal(scratch, reading, (None, "sideways")) == "CheckViolation"
        assert refusal(scratch, reading, (None, "above")) is None  # no bound reachable
        assert refusal(scratch, reading, (9, "above")) == "UniqueViolation"
        assert scratch.execute(
            "SELECT bound, evaluated_at = now() FROM rule_readings"
        ).fetchone() == (None, True)
        # The console reads one series over a range: the key's order serves it.
        assert "(rule, scope, measure, window_start)" in schema.index("rule_readings_pkey")

    def test_0011_one_message_per_incident_a_row_per_change_one_press_once(self, scratch, schema):
        anomaly_id = add_anomaly(scratch)
        change = (
            "INSERT INTO notifications (kind, anomaly_id, severity, dedupe_key)"
            " VALUES (%s, %s, 'high', %s)"
        )
        # Acknowledged, reopened, acknowledged again: each change is its own row.
        assert refusal(scratch, change, ("acknowledged", anomaly_id, "change:1")) is None
        assert refusal(scratch, change, ("reopened", anomaly_id, "change:2")) is None
        assert refusal(scratch, change, ("acknowledged", anomaly_id, "change:3")) is None
        assert refusal(scratch, change, ("acknowledged", anomaly_id, "change:3")) == (
            "UniqueViolation"
        )
        assert refusal(scratch, change, ("snoozed", anomaly_id, "change:4")) == "CheckViolation"
        opened = (
            "INSERT INTO notifications (kind, anomaly_id, severity) VALUES ('opened', %s, 'high')"
        )
        assert refusal(scratch, opened, (anomaly_id,)) is None
        assert refusal(scratch, opened, (anomaly_id,)) == "UniqueViolation"
        message = "INSERT INTO slack_messages (anomaly_id, channel_id, ts) VALUES (%s, %s, %s)"
        assert refusal(scratch, message, (anomaly_id, "C1", "1700000000.000100")) is None
        assert refusal(scratch, message, (anomaly_id, "C1", "1700000000.000200")) == (
            "UniqueViolation"
        )
        press = (
            "INSERT INTO slack_interactions (user_id, action_id, action_ts, anomaly_id, outcome)"
            " VALUES ('U1', 'sentinelops_resolve', '1700000000.1', %s, %s)"
        )
        assert refusal(scratch, press, (anomaly_id, "applied")) is None
        assert refusal(scratch, press, (anomaly_id, "applied")) == "UniqueViolation"
        # The claim asks for an older pending row of the same anomaly.
        assert "(anomaly_id, id)" in schema.index("notifications_pending_anomaly_idx")

    def test_0012_silences_need_a_rule_or_scope_and_cover_their_window(self, scratch):
        silence = (
            "INSERT INTO silences (rule, scope, starts_at, ends_at, reason, created_by)"
            " VALUES (%s, %s, now(), now() + interval '1 hour', %s, 'api:alice')"
        )
        assert refusal(scratch, silence, (None, None, "maintenance")) == "CheckViolation"
        assert refusal(scratch, silence, ("refund_spike", None, "")) == "CheckViolation"
        assert refusal(scratch, silence, ("refund_spike", None, "r" * 501)) == "CheckViolation"
        (silence_id,) = scratch.execute(
            silence + " RETURNING id", ("refund_spike", None, "maintenance")
        ).fetchone()
        # Ending one early may leave it ending before it starts; nothing else may.
        backwards = "UPDATE silences SET ends_at = starts_at - interval '1 minute'"
        assert refusal(scratch, backwards) == "CheckViolation"
        assert refusal(scratch, backwards + ", ended_by = 'api:bob'") is None
        scratch.execute("UPDATE silences SET ends_at = now() + interval '1 hour', ended_by = NULL")

        covering = "SELECT silence_covering(%s, %s, now() + %s)"
        inside, after = timedelta(minutes=30), timedelta(hours=2)
        assert scratch.execute(covering, ("refund_spike", "all", inside)).fetchone() == (
            silence_id,
        )
        assert scratch.execute(covering, ("refund_spike", "all", after)).fetchone() == (None,)
        before = -timedelta(minutes=1)
        assert scratch.execute(covering, ("refund_spike", "all", before)).fetchone() == (None,)
        assert scratch.execute(covering, ("dispute_spike", "all", inside)).fetchone() == (None,)
        (by_scope,) = scratch.execute(
            silence + " RETURNING id", (None, "acct_1", "migration of acct_1")
        ).fetchone()
        assert scratch.execute(covering, ("dispute_spike", "acct_1", inside)).fetchone() == (
            by_scope,
        )
        assert scratch.execute(covering, ("dispute_spike", "acct_2", inside)).fetchone() == (None,)

        anomaly_id = add_anomaly(scratch)
        held = "UPDATE anomalies SET silenced_by = %s WHERE id = %s"
        assert refusal(scratch, held, (silence_id + 1000, anomaly_id)) == "ForeignKeyViolation"
        scratch.execute(held, (silence_id, anomaly_id))
        scratch.execute("DELETE FROM silences WHERE id = %s", (silence_id,))
        assert scratch.execute(
            "SELECT silenced_by FROM anomalies WHERE id = %s", (anomaly_id,)
        ).fetchone() == (None,)

    def test_0013_cleared_incidents_and_their_notices(self, scratch, schema):
        anomaly_id = add_anomaly(scratch)
        scratch.execute("UPDATE anomalies SET cleared_at = window_end WHERE id = %s", (anomaly_id,))
        notice = (
            "INSERT INTO notifications (kind, anomaly_id, severity, dedupe_key)"
            " VALUES (%s, %s, 'high', %s)"
        )
        assert refusal(scratch, notice, ("cleared", anomaly_id, "cleared:1:a")) is None
        assert refusal(scratch, notice, ("recurred", anomaly_id, "recurred:1:b")) is None
        assert refusal(scratch, notice, ("cleared", anomaly_id, "cleared:1:a")) == (
            "UniqueViolation"
        )
        # Each evaluation pass looks for incidents that may clear through a partial index.
        assert "WHERE ((cleared_at IS NULL) AND (status <> 'resolved'::text))" in (
            schema.index("anomalies_uncleared_idx")
        )

    def test_0014_unconfirmed_early_breaches_have_a_notice(self, scratch):
        anomaly_id = add_anomaly(scratch)
        notice = (
            "INSERT INTO notifications (kind, anomaly_id, severity, dedupe_key)"
            " VALUES (%s, %s, 'high', %s)"
        )
        assert refusal(scratch, notice, ("unconfirmed", anomaly_id, "unconfirmed:1:a")) is None
        assert refusal(scratch, notice, ("confirmed", anomaly_id, "confirmed:1:a")) == (
            "CheckViolation"
        )
