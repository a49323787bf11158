-- Silences: a known cause (a planned maintenance, a migration, a launch) kept quiet for a while.
-- Anomalies are still recorded, marked with the silence that held them, but nothing is posted
-- for them while it lasts; what is still open when it ends is posted then, once.
CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule        text,                           -- NULL: every rule (of `scope`)
    scope       text,                           -- NULL: every scope (of `rule`)
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,           -- ending one early sets it to that moment
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_by  text NOT NULL,                  -- the actor, as in anomaly history
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_by    text,                           -- who ended it early, if someone did
    CHECK (rule IS NOT NULL OR scope IS NOT NULL),
    CHECK (ends_at > starts_at OR ended_by IS NOT NULL)
);
CREATE INDEX silences_ends_at_idx ON silences (ends_at);

ALTER TABLE anomalies ADD COLUMN silenced_by bigint REFERENCES silences (id) ON DELETE SET NULL;

-- The silence that covers an anomaly of (rule, scope) at `at`, the one lasting longest if
-- several do; NULL when none. The pipelines ask at recording, the outbox at posting.
CREATE FUNCTION silence_covering(p_rule text, p_scope text, p_at timestamptz) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT id FROM silences
     WHERE (rule IS NULL OR rule = p_rule) AND (scope IS NULL OR scope = p_scope)
       AND starts_at <= p_at AND p_at < ends_at
     ORDER BY ends_at DESC, id LIMIT 1
$$;
