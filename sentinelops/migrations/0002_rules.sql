-- Rollups per 5-minute window (rules read baselines from these, never from raw events),
-- anomalies with one row per incident, and the breaching windows that make each one idempotent.

CREATE TABLE window_metrics (
    window_start             timestamptz PRIMARY KEY,
    payment_attempts         integer NOT NULL DEFAULT 0,  -- distinct payments, not events
    payments_failed          integer NOT NULL DEFAULT 0,
    payments_succeeded       integer NOT NULL DEFAULT 0,
    refunds                  integer NOT NULL DEFAULT 0,
    disputes                 integer NOT NULL DEFAULT 0,
    subscriptions_created    integer NOT NULL DEFAULT 0,
    subscriptions_cancelled  integer NOT NULL DEFAULT 0,
    invoice_payments_failed  integer NOT NULL DEFAULT 0,
    events                   integer NOT NULL DEFAULT 0,  -- verified events by event time
    events_received          integer NOT NULL DEFAULT 0,  -- verified events by receipt time
    invalid_attempts         integer NOT NULL DEFAULT 0,  -- rejected webhooks by receipt time
    computed_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE window_amounts (
    currency        text NOT NULL,
    window_start    timestamptz NOT NULL,
    payments        integer NOT NULL,
    amount_sum      bigint NOT NULL,
    amount_max      bigint NOT NULL,
    max_event_id    text NOT NULL,
    log_amount_sum  double precision NOT NULL,            -- for a geometric mean from rollups
    PRIMARY KEY (currency, window_start)
);
CREATE INDEX window_amounts_window_idx ON window_amounts (window_start);

CREATE TABLE anomalies (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    scope            text NOT NULL DEFAULT 'all',
    severity         text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    status           text NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title            text NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL CHECK (window_end > window_start),
    detected_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    resolved_at      timestamptz,
    evidence         jsonb NOT NULL
);
CREATE INDEX anomalies_incident_idx ON anomalies (rule, scope, window_end) WHERE status <> 'resolved';
CREATE INDEX anomalies_detected_idx ON anomalies (detected_at, id);

-- One row per breaching (rule, scope, window): the unique key that makes every re-run a no-op.
CREATE TABLE anomaly_windows (
    rule          text NOT NULL,
    scope         text NOT NULL,
    window_start  timestamptz NOT NULL,
    anomaly_id    bigint NOT NULL REFERENCES anomalies (id) ON DELETE CASCADE,
    severity      text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    evidence      jsonb NOT NULL,
    PRIMARY KEY (rule, scope, window_start)
);
CREATE INDEX anomaly_windows_anomaly_idx ON anomaly_windows (anomaly_id);

CREATE TABLE anomaly_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    anomaly_id   bigint NOT NULL REFERENCES anomalies (id) ON DELETE CASCADE,
    from_status  text,
    to_status    text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    note         text
);
CREATE INDEX anomaly_history_anomaly_idx ON anomaly_history (anomaly_id, id);
