-- Herald 0.2: debounce. Changes to one row inside a route's window fold into one
-- notification; its jobs wait in the ledger (eta) until the window closes, not in RabbitMQ.

ALTER TABLE herald.notifications
    ADD COLUMN debounce_key     text,
    ADD COLUMN first_change_at  timestamptz,
    ADD COLUMN due_at           timestamptz;

CREATE INDEX notifications_debounce_idx ON herald.notifications (debounce_key, id)
    WHERE debounce_key IS NOT NULL;

-- Jobs whose due time has come and that were never published.
CREATE INDEX jobs_due_idx ON herald.jobs (eta) WHERE status = 'pending' AND published_at IS NULL;
