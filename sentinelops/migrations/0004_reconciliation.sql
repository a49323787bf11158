-- Reconciliation with Stripe's Events API: how far it has listed, and the events it stored
-- that the webhook missed, until a complete run has reported them as a webhook gap.

-- One row. Advanced only at the end of a complete listing, so a run that dies half-way is
-- listed again from the same point.
CREATE TABLE reconciliation_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    listed_until  timestamptz NOT NULL,  -- every event created up to here has been listed
    max_created   timestamptz,           -- the newest event time seen, for operators
    last_run_at   timestamptz NOT NULL
);

-- Pages are committed as they are listed; an event stays unreported until a complete run
-- counts it into a gap, so the gap of a run that died half-way is raised by the next one.
CREATE TABLE reconciled_events (
    event_id     text PRIMARY KEY REFERENCES stripe_events (id) ON DELETE CASCADE,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    reported_at  timestamptz
);
CREATE INDEX reconciled_events_unreported_idx ON reconciled_events (event_id)
    WHERE reported_at IS NULL;
