-- Early looks (sentinelops_pipelines/looks.py) judge the 5-minute window still open. A breach
-- one of them found that the closed window does not confirm stays recorded, marked in its
-- evidence, and an announced incident's thread says so: one 'unconfirmed' row of the outbox.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
        'opened', 'escalated', 'daily_summary', 'catch_up', 'acknowledged', 'resolved', 'reopened',
        'cleared', 'recurred', 'unconfirmed'));
