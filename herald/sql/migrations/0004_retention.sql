-- Retention (herald jobs purge): a change-log row is purged only when no remaining
-- notification lists it, found through this index rather than a scan per row.
CREATE INDEX notifications_change_ids_idx ON herald.notifications USING gin (change_ids);
