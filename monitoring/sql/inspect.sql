-- Operator queries behind `herald jobs ...` and `herald stats`, loaded by name
-- (monitoring/sql/__init__.py). Read-only except the retry and cancel statements.

-- name: list_jobs
-- Newest first; %(actor)s and %(status)s are optional filters (NULL: any).
SELECT id, actor, queue, status, attempts, created_at, finished_at, change_id, recipient,
       last_error
  FROM herald.jobs
 WHERE (%(actor)s::text IS NULL OR actor = %(actor)s::text)
   AND (%(status)s::text IS NULL OR status = %(status)s::text)
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: get_job
SELECT id, message_id, actor, queue, status, attempts, notification_id, change_id, recipient,
       unique_key, priority, created_at, published_at, started_at, finished_at, eta, last_error
  FROM herald.jobs
 WHERE id = %(id)s;

-- name: get_notification
SELECT id, route, table_name, row_pk, change_ids, ai, on_ai_failure, priority, created_at
  FROM herald.notifications
 WHERE id = %(id)s;

-- name: get_summary_status
-- The summary's outcome only: never the text's aliases map (it holds personal data).
SELECT status, model, error, prompt_tokens, completion_tokens, created_at
  FROM herald.summaries
 WHERE notification_id = %(notification_id)s;

-- name: get_delivery
SELECT id, status, attempts, ambiguous, message_id_header, created_at, sent_at, error
  FROM herald.deliveries
 WHERE notification_id = %(notification_id)s AND recipient = %(recipient)s;

-- name: sibling_jobs
SELECT id, actor, status, attempts, recipient, created_at, finished_at, last_error
  FROM herald.jobs
 WHERE notification_id = %(notification_id)s AND id <> %(id)s
 ORDER BY id;

-- name: lock_jobs
-- The jobs to retry, locked so that neither a worker nor the orchestrator's republisher
-- touches them until the retry commits.
SELECT id, status, actor, unique_key
  FROM herald.jobs
 WHERE id = ANY(%(ids)s::bigint[])
 ORDER BY id
   FOR UPDATE;

-- name: lock_failed_batch
-- The next batch of failed jobs after %(after)s (keyset order, so a skipped job is not
-- seen again). SKIP LOCKED: a job someone else is handling is left to them.
SELECT id, status, actor, unique_key
  FROM herald.jobs
 WHERE status = 'failed' AND id > %(after)s
 ORDER BY id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: open_duplicates
-- Open jobs holding the same (actor, unique_key) as a job we would reopen: reopening it
-- would break jobs_unique_open_idx, and the open one already does the work.
SELECT j.id AS job_id, o.id AS open_id, o.status AS open_status
  FROM herald.jobs j
  JOIN herald.jobs o
    ON o.actor = j.actor AND o.unique_key = j.unique_key AND o.id <> j.id
   AND o.status IN ('pending', 'running')
 WHERE j.id = ANY(%(ids)s::bigint[]) AND j.unique_key IS NOT NULL;

-- name: reopen_jobs
-- Back to pending and unpublished; attempts and last_error are kept for the record.
UPDATE herald.jobs
   SET status = 'pending', published_at = NULL, finished_at = NULL, eta = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('failed', 'canceled')
RETURNING id, message_id, actor, queue, priority;

-- name: lock_job
SELECT id, status FROM herald.jobs WHERE id = %(id)s FOR UPDATE;

-- name: cancel_job
-- Only open jobs: a pending job's message, and a running job's later retries, are skipped
-- by the ledger middleware when they arrive.
UPDATE herald.jobs
   SET status = 'canceled', finished_at = clock_timestamp()
 WHERE id = %(id)s AND status IN ('pending', 'running')
RETURNING id, status;

-- name: stats_jobs_by_actor_status
SELECT actor, status, count(*) AS n
  FROM herald.jobs
 GROUP BY actor, status
 ORDER BY actor, status;

-- name: stats_mean_processing
-- Duration of the attempt that completed (started_at is reset on every attempt).
SELECT actor,
       avg(extract(epoch FROM finished_at - started_at))::float8 AS mean_seconds,
       count(*) AS n
  FROM herald.jobs
 WHERE status = 'complete' AND started_at IS NOT NULL AND finished_at IS NOT NULL
   AND finished_at > clock_timestamp() - make_interval(secs => %(window_seconds)s)
 GROUP BY actor
 ORDER BY actor;

-- name: stats_overdue
-- Pending jobs that should have run by now: never published after the grace period, or
-- a (retry) eta long past.
SELECT actor, count(*) AS n,
       extract(epoch FROM clock_timestamp() - min(coalesce(eta, created_at)))::float8
           AS oldest_seconds
  FROM herald.jobs
 WHERE status = 'pending'
   AND ((published_at IS NULL
         AND created_at < clock_timestamp() - make_interval(secs => %(unpublished_seconds)s))
        OR eta < clock_timestamp() - make_interval(secs => %(eta_seconds)s))
 GROUP BY actor
 ORDER BY actor;

-- name: stats_unclaimed_changes
SELECT count(*) AS n,
       extract(epoch FROM clock_timestamp() - min(changed_at))::float8 AS oldest_seconds
  FROM herald.change_log
 WHERE claimed_at IS NULL;

-- name: stats_deliveries
SELECT status, count(*) AS n, count(*) FILTER (WHERE ambiguous) AS ambiguous
  FROM herald.deliveries
 GROUP BY status
 ORDER BY status;

-- name: stats_last_orchestrator_success
SELECT max(finished_at) AS finished_at
  FROM herald.orchestrator_runs
 WHERE status = 'succeeded';
