-- Failed payments whose code says the path to the bank failed (processing_error and its kin),
-- counted apart, so payment_failure_spike can judge them against their own, much lower, usual
-- rate: a handful of them at a small shop already means the processor is down.
--
-- 0 on rows rolled up before this migration; the rule then judges against its
-- min_processing_rate floor until the history is rolled up again (README, "Amounts after
-- upgrading": the same re-roll fills both). A constant default adds the column without a rewrite.
ALTER TABLE window_metrics ADD COLUMN payments_failed_processing integer NOT NULL DEFAULT 0;
