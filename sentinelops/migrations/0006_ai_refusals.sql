-- The daily summary says precisely why an AI answer was not used: refused for a mention, a
-- link or markup (it is posted to a channel), or a change worded against its sign.
ALTER TABLE daily_summaries DROP CONSTRAINT daily_summaries_ai_error_check;
ALTER TABLE daily_summaries ADD CONSTRAINT daily_summaries_ai_error_check CHECK (ai_error IN (
    'ai_not_configured', 'ai_rate_limited', 'ai_quota', 'ai_auth', 'ai_timeout',
    'ai_bad_response', 'ai_numeric_mismatch', 'ai_failed',
    'ai_refused_mention', 'ai_refused_link', 'ai_refused_markup', 'ai_wrong_direction'));
