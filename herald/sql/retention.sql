-- Retention: `herald jobs purge` and the periodic purge actor (herald/retention.py).
-- Every statement removes at most %(limit)s rows of its kind and runs in its own short
-- transaction; rows another transaction holds are skipped (SKIP LOCKED), never waited for.

-- name: retention_cutoff
-- The cutoff from the database's clock, so every process agrees on "older than".
SELECT clock_timestamp() - make_interval(secs => %(seconds)s) AS cutoff;

-- name: purge_notifications
-- Notifications older than the cutoff whose jobs are all finished (in %(statuses)s) before
-- it, with their jobs, summaries and deliveries. A notification with an open job, a job
-- finished after the cutoff, or a kept failed job stays whole: `herald jobs retry` needs it.
WITH doomed AS (
    SELECT n.id
      FROM herald.notifications n
     WHERE n.created_at < %(cutoff)s
       AND EXISTS (SELECT 1 FROM herald.jobs j WHERE j.notification_id = n.id)
       AND NOT EXISTS (
            SELECT 1 FROM herald.jobs j
             WHERE j.notification_id = n.id
               AND (j.status <> ALL (%(statuses)s::text[])
                    OR coalesce(j.finished_at, j.created_at) >= %(cutoff)s))
     ORDER BY n.id
     LIMIT %(limit)s
       FOR UPDATE OF n SKIP LOCKED
), jobs_gone AS (
    DELETE FROM herald.jobs j USING doomed d WHERE j.notification_id = d.id RETURNING j.id
), summaries_gone AS (
    DELETE FROM herald.summaries s USING doomed d WHERE s.notification_id = d.id
    RETURNING s.notification_id
), deliveries_gone AS (
    DELETE FROM herald.deliveries v USING doomed d WHERE v.notification_id = d.id RETURNING v.id
), notifications_gone AS (
    DELETE FROM herald.notifications n USING doomed d WHERE n.id = d.id RETURNING n.id
)
SELECT (SELECT count(*) FROM notifications_gone) AS notifications,
       (SELECT count(*) FROM jobs_gone) AS jobs,
       (SELECT count(*) FROM summaries_gone) AS summaries,
       (SELECT count(*) FROM deliveries_gone) AS deliveries;

-- name: purge_orphan_jobs
-- Finished jobs that belong to no notification.
DELETE FROM herald.jobs
 WHERE id IN (SELECT id FROM herald.jobs
               WHERE notification_id IS NULL
                 AND status = ANY (%(statuses)s::text[])
                 AND coalesce(finished_at, created_at) < %(cutoff)s
               ORDER BY id
               LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
   AND status = ANY (%(statuses)s::text[]);

-- name: purge_changes
-- Change-log rows claimed before the cutoff, with an outcome, that no remaining notification
-- lists. Walks the table by id from %(after)s so rows that must stay are passed, not
-- revisited; returns the last id looked at (NULL when there is nothing further).
WITH batch AS (
    SELECT id FROM herald.change_log
     WHERE id > %(after)s AND claimed_at < %(cutoff)s AND outcome IS NOT NULL
     ORDER BY id
     LIMIT %(limit)s
), gone AS (
    DELETE FROM herald.change_log c
     USING batch b
     WHERE c.id = b.id
       AND NOT EXISTS (SELECT 1 FROM herald.notifications n WHERE n.change_ids @> ARRAY[c.id])
    RETURNING c.id
)
SELECT (SELECT max(id) FROM batch) AS last_id, (SELECT count(*) FROM gone) AS deleted;

-- name: purge_orchestrator_runs
-- The orchestrator's run log: finished runs older than the cutoff.
DELETE FROM herald.orchestrator_runs
 WHERE id IN (SELECT id FROM herald.orchestrator_runs
               WHERE status <> 'running' AND started_at < %(cutoff)s
               ORDER BY id
               LIMIT %(limit)s);

-- name: purge_digests
-- Digest periods finished before the cutoff (sent, empty, muted; failed too only when
-- %(statuses)s has it), with the items they collected and the digest notifications no
-- other item still waits for (a digest route's notifications have no jobs). The NOT
-- EXISTS reads the snapshot from before this statement, so the items deleted here are
-- excluded by id.
WITH doomed AS (
    SELECT id FROM herald.digest_runs
     WHERE coalesce(sent_at, created_at) < %(cutoff)s
       AND status = ANY (ARRAY['sent', 'empty', 'muted']
                         || CASE WHEN 'failed' = ANY (%(statuses)s::text[])
                                 THEN ARRAY['failed'] ELSE ARRAY[]::text[] END)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), items_gone AS (
    DELETE FROM herald.digest_items i USING doomed d WHERE i.run_id = d.id
    RETURNING i.id, i.notification_id
), runs_gone AS (
    DELETE FROM herald.digest_runs r USING doomed d WHERE r.id = d.id RETURNING r.id
), notifications_gone AS (
    DELETE FROM herald.notifications n
     WHERE n.id IN (SELECT notification_id FROM items_gone)
       AND NOT EXISTS (SELECT 1 FROM herald.digest_items o
                        WHERE o.notification_id = n.id
                          AND o.id NOT IN (SELECT id FROM items_gone))
       AND NOT EXISTS (SELECT 1 FROM herald.jobs j WHERE j.notification_id = n.id)
    RETURNING n.id
)
SELECT (SELECT count(*) FROM runs_gone) AS digest_runs,
       (SELECT count(*) FROM notifications_gone) AS notifications;

-- name: purge_recipient_skips
-- Why a recipient was left out, recorded before the cutoff.
DELETE FROM herald.recipient_skips
 WHERE id IN (SELECT id FROM herald.recipient_skips
               WHERE created_at < %(cutoff)s
               ORDER BY created_at
               LIMIT %(limit)s);
