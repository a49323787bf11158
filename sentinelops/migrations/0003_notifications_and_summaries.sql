-- The daily operations summaries, and the outbox of Slack notifications: one row per thing to
-- post, written in the transaction that makes it postable, so a run that dies loses nothing.

CREATE TABLE daily_summaries (
    date          date PRIMARY KEY,                  -- the UTC day summarised
    facts         jsonb NOT NULL,                    -- the only input of the wording
    overall       text NOT NULL,
    highlights    jsonb NOT NULL CHECK (jsonb_typeof(highlights) = 'array'),
    watch         jsonb NOT NULL CHECK (jsonb_typeof(watch) = 'array'),
    text          text NOT NULL,
    used_ai       boolean NOT NULL DEFAULT false,
    ai_error      text CHECK (ai_error IN (
                      'ai_not_configured', 'ai_rate_limited', 'ai_quota', 'ai_auth', 'ai_timeout',
                      'ai_bad_response', 'ai_numeric_mismatch', 'ai_failed')),
    model         text,
    delivered_at  timestamptz,                       -- null until Slack accepted it
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel          text NOT NULL DEFAULT 'slack' CHECK (channel IN ('slack')),
    kind             text NOT NULL CHECK (kind IN ('opened', 'escalated', 'daily_summary')),
    anomaly_id       bigint REFERENCES anomalies (id) ON DELETE CASCADE,
    severity         text CHECK (severity IN ('low', 'medium', 'high')),
    summary_date     date REFERENCES daily_summaries (date) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    -- Also the claim: a sender pushes it forward by a lease before posting, so a sender that
    -- dies mid-post leaves the row to be retried once the lease ends.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE WHEN kind = 'daily_summary'
                THEN summary_date IS NOT NULL AND anomaly_id IS NULL
                ELSE anomaly_id IS NOT NULL AND severity IS NOT NULL AND summary_date IS NULL END),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

-- The keys that make every re-run a no-op: an anomaly is announced once per kind and severity
-- (an escalation to high once, however often its window is re-evaluated), a day once.
CREATE UNIQUE INDEX notifications_anomaly_key
    ON notifications (anomaly_id, channel, kind, severity) WHERE anomaly_id IS NOT NULL;
CREATE UNIQUE INDEX notifications_summary_key
    ON notifications (summary_date, channel) WHERE summary_date IS NOT NULL;
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at, id) WHERE status = 'pending';
