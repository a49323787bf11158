-- What SQL knows about severities and demo anomalies, said once for the API and the pipelines.

-- An anomaly's severities, in order: 1 for the lowest, NULL for any other text. Python's twin is
-- sentinelops/severity.py (tests/test_one_home.py holds the two to one order). Not STRICT, so
-- the planner can inline it.
CREATE FUNCTION severity_rank(severity text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_position(ARRAY['low', 'medium', 'high'], severity)
$$;

-- The severity columns accept exactly the ranked names (the same three as before).
ALTER TABLE anomalies
    DROP CONSTRAINT anomalies_severity_check,
    ADD CONSTRAINT anomalies_severity_check CHECK (severity_rank(severity) IS NOT NULL);
ALTER TABLE anomaly_windows
    DROP CONSTRAINT anomaly_windows_severity_check,
    ADD CONSTRAINT anomaly_windows_severity_check CHECK (severity_rank(severity) IS NOT NULL);
ALTER TABLE notifications
    DROP CONSTRAINT notifications_severity_check,
    ADD CONSTRAINT notifications_severity_check
        CHECK (severity IS NULL OR severity_rank(severity) IS NOT NULL);

-- Whether an anomaly is the demo's (`sentinelops seed-demo` marks its evidence `_demo: true`):
-- listed with demo_only, never announced or counted in a summary.
CREATE FUNCTION is_demo(evidence jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(evidence->>'_demo', 'false') = 'true'
$$;
