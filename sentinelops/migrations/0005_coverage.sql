-- Coverage: every closed 5-minute window is evaluated with all its events, whatever happened.
--
-- "With all its events" is decided by PostgreSQL's own visibility, not by clocks: each event
-- records the transaction that stored it, each rollup the snapshot it read, and an event is in
-- an evaluation exactly when its transaction is visible in that snapshot. A timestamp cursor
-- cannot do this: an insert that started before a cursor's now() and committed after it has a
-- received_at the cursor already passed.

-- The storing transaction's id (an xid8, as bigint): NULL for events stored before this
-- migration, which count as seen by every evaluation. Ids grow with insertion order, so a BRIN
-- index finds what arrived since a point for almost nothing per insert (a B-tree cost the
-- webhook's insert ceiling 5-15%, and PostgreSQL has no BRIN class for xid8).
ALTER TABLE stripe_events ADD COLUMN ingest_xid bigint;
ALTER TABLE stripe_events ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX stripe_events_ingest_xid_idx ON stripe_events USING brin (ingest_xid)
    WITH (pages_per_range = 32, autosummarize = on);

-- rolled_snapshot: what the rollup of the window read. evaluated_snapshot: the rolled_snapshot
-- the rules last judged (NULL: never evaluated). Windows rolled up before this migration were
-- evaluated by the code of their day; '1:1:' sees every event stored before it and none after.
ALTER TABLE window_metrics
    ADD COLUMN rolled_snapshot pg_snapshot,
    ADD COLUMN evaluated_snapshot pg_snapshot;
UPDATE window_metrics SET rolled_snapshot = '1:1:', evaluated_snapshot = '1:1:';

-- Whether `newer` sees every transaction `older` sees. Two rollups of one window can run at once
-- and commit in either order; a rollup (or an evaluation) that read less than what is stored
-- must not overwrite it. NULL `older`: nothing stored yet.
CREATE FUNCTION snapshot_covers(newer pg_snapshot, older pg_snapshot) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT older IS NULL OR (
        pg_snapshot_xmax(older) <= pg_snapshot_xmax(newer)
        AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(newer) AS x
                         WHERE pg_visible_in_snapshot(x, older)))
$$;

-- One row: the oldest event transaction that may not be evaluated yet. Everything stored by an
-- older transaction is in its window's evaluation; the scan for stale windows starts here.
CREATE TABLE coverage_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scanned_xid  bigint NOT NULL,
    scanned_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO coverage_state (scanned_xid) VALUES (0);

-- An incident whose window ended long before it was found (a catch-up after downtime, history
-- imported by reconciliation, a retry days late) is recorded, marked, and summarised in one
-- catch-up message instead of being posted on its own.
ALTER TABLE anomalies ADD COLUMN found_late boolean NOT NULL DEFAULT false;

-- Notifications: a catch-up message (its anomalies in `payload`, made unique by `dedupe_key`),
-- and `failed` for answers retrying cannot fix (a revoked webhook). A failed row keeps a
-- fingerprint of the destination it failed on, never the destination itself, and is tried
-- once more when the destination changes.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    DROP CONSTRAINT notifications_status_check,
    DROP CONSTRAINT notifications_check,
    ADD COLUMN payload jsonb,
    ADD COLUMN dedupe_key text,
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN target_fingerprint text;
ALTER TABLE notifications
    ADD CONSTRAINT notifications_kind_check
        CHECK (kind IN ('opened', 'escalated', 'daily_summary', 'catch_up')),
    ADD CONSTRAINT notifications_status_check
        CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    ADD CONSTRAINT notifications_subject_check CHECK (CASE
        WHEN kind = 'daily_summary' THEN summary_date IS NOT NULL AND anomaly_id IS NULL
        WHEN kind = 'catch_up' THEN payload IS NOT NULL AND dedupe_key IS NOT NULL
                                    AND anomaly_id IS NULL AND summary_date IS NULL
        ELSE anomaly_id IS NOT NULL AND severity IS NOT NULL AND summary_date IS NULL END),
    ADD CONSTRAINT notifications_failed_check CHECK ((status = 'failed') = (failed_at IS NOT NULL));
CREATE UNIQUE INDEX notifications_dedupe_key ON notifications (channel, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX notifications_failed_idx ON notifications (id) WHERE status = 'failed';
