-- What each rule read in each evaluated 5-minute window, per measure: the observed value, the
-- value expected, and the bound the decision compared it with (it moves with volume under the
-- significance-based rules). The console draws an incident's chart from it without importing
-- the rules: the measure that decided is named in the finding's evidence ("chart").
--
-- Written by every evaluation pass, in the transaction that records its anomalies; a
-- re-evaluated window replaces its rows. The console reads a range of one (rule, scope,
-- measure), which the primary key serves.
CREATE TABLE rule_readings (
    rule         text NOT NULL,
    scope        text NOT NULL,                -- 'all', or the currency for amount_spike
    measure      text NOT NULL,                -- short id: failed_30m, count_30m, max_amount, ...
    window_start timestamptz NOT NULL,
    label        text NOT NULL,                -- what a person reads: failed payments in 30 min
    observed     double precision NOT NULL,
    expected     double precision,             -- NULL: the rule has no baseline here
    bound        double precision,             -- NULL: no value of this window would fire
    -- 'above': the window fires at or above the bound; 'below' (silence): at or below it.
    bound_kind   text NOT NULL CHECK (bound_kind IN ('above', 'below')),
    evaluated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, scope, measure, window_start)
);
