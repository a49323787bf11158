-- Raw Stripe events, stored exactly once per Stripe event id, and rejected webhook attempts.

CREATE TABLE stripe_events (
    id               text PRIMARY KEY CHECK (id LIKE 'evt\_%'),
    type             text NOT NULL,
    created          timestamptz NOT NULL,            -- Stripe's event time: rules run on it
    received_at      timestamptz NOT NULL DEFAULT now(),
    last_received_at timestamptz NOT NULL DEFAULT now(),
    livemode         boolean NOT NULL,
    api_version      text,
    account          text,                            -- the connected account for Connect events
    payload          jsonb NOT NULL,
    source           text NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'reconciliation')),
    deliveries       integer NOT NULL DEFAULT 1 CHECK (deliveries >= 0)
);

-- Window queries on event time, newest-first keyset pages, and per-type filters.
CREATE INDEX stripe_events_created_idx ON stripe_events (created, id);
CREATE INDEX stripe_events_type_created_idx ON stripe_events (type, created, id);
-- Receipt time: late-event detection and ingestion freshness.
CREATE INDEX stripe_events_received_at_idx ON stripe_events (received_at);

CREATE TABLE webhook_rejections (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL CHECK (reason IN (
                     'missing_header', 'malformed_header', 'timestamp_out_of_tolerance',
                     'signature_mismatch', 'malformed_json', 'too_large')),
    client_addr  text,
    body_size    bigint NOT NULL CHECK (body_size >= 0),
    body_sha256  text,                                -- null when the body was not read (too large)
    excerpt      text CHECK (length(excerpt) <= 256)  -- a capped excerpt, never the whole body
);

CREATE INDEX webhook_rejections_received_at_idx ON webhook_rejections (received_at);
