-- The spread of log amounts per currency-window, so the amount rule can judge a payment against
-- its currency's own distribution (mean and standard deviation of ln(amount) over 30 days)
-- instead of a multiple of the average.
--
-- NULL on rows rolled up before this migration: the rollup fills it from now on, and a rules
-- backfill of the last 30 days (README, "Amounts after upgrading") fills the history. Until
-- then the amount rule reads the spread only from rows that have it. Nullable and without a
-- default, so adding it rewrites nothing.
ALTER TABLE window_amounts ADD COLUMN log_amount_sq_sum double precision;
