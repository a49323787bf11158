-- Cleared: an incident whose rule has not breached for a whole quiet gap of closed, evaluated
-- windows gets `cleared_at`, the end of its last breaching window (when the condition stopped).
-- The status does not change: people still resolve. A breach that joins the incident again
-- sets it back to NULL. The app mode tells both in the incident's thread, the webhook mode in
-- one short message each ('cleared', 'recurred' rows of the outbox).
ALTER TABLE anomalies ADD COLUMN cleared_at timestamptz;

-- Incidents open long before this migration are not announced as cleared all at once: they
-- count as cleared at their last window.
UPDATE anomalies SET cleared_at = window_end
 WHERE status <> 'resolved' AND window_end < now() - interval '2 hours';

-- Each evaluation pass looks for incidents that may clear: few rows, found by this index.
CREATE INDEX anomalies_uncleared_idx ON anomalies (window_end)
    WHERE cleared_at IS NULL AND status <> 'resolved';

ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
        'opened', 'escalated', 'daily_summary', 'catch_up', 'acknowledged', 'resolved', 'reopened',
        'cleared', 'recurred'));
