-- Herald 0.9: changes that became no notification (skipped: no route, a route without
-- recipients; failed: over a limit, malformed) are counted by reason at every scrape
-- (herald_changes_not_routed) and by `herald stats`. This partial index holds only those
-- rows, so the count reads them alone, not the whole change log.
CREATE INDEX change_log_not_routed_idx ON herald.change_log (outcome) WHERE outcome <> 'routed';
