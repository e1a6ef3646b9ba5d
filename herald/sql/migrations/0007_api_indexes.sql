-- Herald 0.7: indexes for the HTTP API's job list (`herald serve`, GET /api/jobs), so
-- that each filter answers a page from an index on a ledger of millions of jobs.
-- Filters on status, actor and queue already have jobs_status_idx (and enough rows per
-- value that the newest-first scan stops early); change_id goes through
-- notifications_change_ids_idx.

-- recipient = X, newest first.
CREATE INDEX jobs_recipient_idx ON herald.jobs (recipient, id) WHERE recipient IS NOT NULL;
-- created_after / created_before, and sort=created_at (keyset on created_at, id).
CREATE INDEX jobs_created_idx ON herald.jobs (created_at, id);
-- route = X and table = X: the notifications first when few match.
CREATE INDEX notifications_route_idx ON herald.notifications (route, id);
CREATE INDEX notifications_table_idx ON herald.notifications (table_name, id);
