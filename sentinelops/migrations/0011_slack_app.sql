-- Slack app mode: one message per incident, updated as the incident changes, with a reply in
-- its thread for each change (acknowledged, resolved, reopened: one outbox row each).
ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
        'opened', 'escalated', 'daily_summary', 'catch_up', 'acknowledged', 'resolved', 'reopened')),
    -- What this row posted (a thread reply, a summary), stored as soon as Slack returns it.
    ADD COLUMN reply_ts text;
-- An anomaly is announced once per kind and severity; its changes are keyed by their history
-- row (dedupe_key 'change:<id>'), since one can be acknowledged, reopened and acknowledged again.
DROP INDEX notifications_anomaly_key;
CREATE UNIQUE INDEX notifications_anomaly_key ON notifications (anomaly_id, channel, kind, severity)
    WHERE anomaly_id IS NOT NULL AND kind IN ('opened', 'escalated');
-- The claim looks for an older pending row of the same anomaly.
CREATE INDEX notifications_pending_anomaly_idx ON notifications (anomaly_id, id)
    WHERE status = 'pending';

-- Each anomaly's message in the app's channel, its ts stored the moment Slack returns it.
CREATE TABLE slack_messages (
    anomaly_id  bigint NOT NULL REFERENCES anomalies (id) ON DELETE CASCADE,
    channel_id  text NOT NULL,
    ts          text NOT NULL,
    posted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (anomaly_id, channel_id)
);

-- Button presses applied, so the same interaction delivered twice (Slack retries, Socket Mode
-- redelivers) applies once: keyed as Slack identifies one press.
CREATE TABLE slack_interactions (
    user_id      text NOT NULL,
    action_id    text NOT NULL,
    action_ts    text NOT NULL,
    anomaly_id   bigint REFERENCES anomalies (id) ON DELETE CASCADE,
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'conflict')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, action_id, action_ts)
);
CREATE INDEX slack_interactions_received_idx ON slack_interactions (received_at);
