-- The HTTP API's reads (herald/web/ through monitoring/jobs_api.py), loaded by name
-- (monitoring/sql/__init__.py). The writes it makes (retry, cancel) are inspect.sql's,
-- except `api_insert_change`, the API's way into the change log.
--
-- The job queries share one filter block (`api_job_filters`, spliced in by
-- monitoring/jobs_api.py). They run unprepared (`prepare=False`), so PostgreSQL plans
-- each with the values given and a NULL filter folds away before planning: the plan is
-- the one for the filters actually used.

-- name: api_job_filters
-- The list filters (a NULL parameter is no filter), put in place of /*FILTERS*/ below.
-- `q` looks at the newest jobs only: ids above %(q_floor)s (api_q_floor).
    (%(actor)s::text IS NULL OR j.actor = %(actor)s::text)
AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
AND (%(route)s::text IS NULL OR CASE WHEN %(route_rare)s::boolean
    -- A rare route: its notifications' ids hashed, the jobs scanned newest first against
    -- them (a lookup of each job's notification would probe thousands to fill a page).
    THEN j.notification_id IN (SELECT id FROM herald.notifications WHERE route = %(route)s::text)
    ELSE n.route = %(route)s::text END)
AND (%(table)s::text IS NULL OR n.table_name IN (%(table)s::text, 'public.' || %(table)s::text))
AND (%(recipient)s::text IS NULL OR j.recipient = %(recipient)s::text)
AND (%(change_id)s::bigint IS NULL OR j.notification_id = ANY (ARRAY(
        SELECT id FROM herald.notifications WHERE change_ids @> ARRAY[%(change_id)s::bigint])))
AND (%(created_after)s::timestamptz IS NULL OR j.created_at >= %(created_after)s::timestamptz)
AND (%(created_before)s::timestamptz IS NULL OR j.created_at < %(created_before)s::timestamptz)
AND (%(q)s::text IS NULL
     OR (j.id > %(q_floor)s::bigint
         AND (j.last_error ILIKE %(q)s::text OR j.recipient ILIKE %(q)s::text)))

-- name: api_jobs_page
-- One page of jobs, keyset-paginated. /*KEYSET*/ and /*ORDER*/ are replaced with one of
-- the fixed fragments of monitoring/jobs_api.py (nothing else is ever spliced in).
SELECT j.id, j.actor, j.queue, j.status, j.attempts, j.deferrals, j.priority, j.change_id,
       j.notification_id, j.recipient, j.created_at, j.published_at, j.started_at,
       j.finished_at, j.eta, j.last_error, n.route, n.table_name
  FROM herald.jobs j
  LEFT JOIN herald.notifications n ON n.id = j.notification_id
 WHERE (%(status)s::text IS NULL OR j.status = %(status)s::text)
   AND /*FILTERS*/
   AND /*KEYSET*/
 ORDER BY /*ORDER*/
 LIMIT %(limit)s;

-- name: api_jobs_count
-- Exact counts per status of the jobs matching the filters (small ledgers only).
SELECT j.status, count(*) AS n
  FROM herald.jobs j
  LEFT JOIN herald.notifications n ON n.id = j.notification_id
 WHERE (%(status)s::text IS NULL OR j.status = %(status)s::text)
   AND /*FILTERS*/
 GROUP BY j.status;

-- name: api_jobs_matching
-- The jobs of one status matching the filters: run only under EXPLAIN, whose row estimate
-- is the count of a large ledger.
SELECT 1
  FROM herald.jobs j
  LEFT JOIN herald.notifications n ON n.id = j.notification_id
 WHERE j.status = %(status)s::text
   AND /*FILTERS*/;

-- name: api_ledger_size
-- The planner's idea of the ledger's size (-1: never analysed yet), and a count capped
-- at %(cap)s + 1 rows for when it has none.
SELECT (SELECT reltuples::bigint FROM pg_class WHERE oid = 'herald.jobs'::regclass) AS estimate,
       CASE WHEN (SELECT reltuples FROM pg_class WHERE oid = 'herald.jobs'::regclass) < 0
            THEN (SELECT count(*) FROM (SELECT 1 FROM herald.jobs LIMIT %(cap)s + 1) capped)
       END AS capped;

-- name: api_jobs_lock_matching
-- Bulk retry: the next batch of jobs matching the filters after %(after)s, locked (a job
-- someone else holds is skipped, as `lock_failed_batch` does).
SELECT j.id, j.status, j.actor, j.unique_key
  FROM herald.jobs j
  LEFT JOIN herald.notifications n ON n.id = j.notification_id
 WHERE j.status = %(status)s::text AND j.id > %(after)s::bigint
   AND /*FILTERS*/
 ORDER BY j.id
 LIMIT %(limit)s
   FOR UPDATE OF j SKIP LOCKED;

-- name: api_route_share
-- The share of notifications on a route, from the planner's statistics (NULL: not among
-- the most common values, or no statistics yet).
SELECT f.freq::float8 AS share
  FROM pg_stats st,
       unnest(st.most_common_vals::text::text[], st.most_common_freqs) AS f(val, freq)
 WHERE st.schemaname = 'herald' AND st.tablename = 'notifications' AND st.attname = 'route'
   AND f.val = %(route)s::text;

-- name: api_q_floor
-- Free-text search looks at the newest %(window)s jobs only (as Oban Web does): an ILIKE
-- over a whole ledger of millions would be a full scan per request.
SELECT coalesce(max(id), 0) - %(window)s AS floor FROM herald.jobs;

-- name: api_job
-- One job with its timings, in milliseconds and seconds (NULL until they apply).
SELECT j.id, j.message_id::text AS message_id, j.actor, j.queue, j.status, j.attempts,
       j.deferrals, j.priority, j.notification_id, j.change_id, j.recipient, j.unique_key,
       j.created_at, j.published_at, j.started_at, j.finished_at, j.eta, j.last_error,
       (extract(epoch FROM j.started_at - coalesce(j.published_at, j.created_at)) * 1000)::float8
           AS queued_ms,
       (extract(epoch FROM j.finished_at - j.started_at) * 1000)::float8 AS processing_ms,
       CASE WHEN j.status = 'pending' AND j.eta IS NOT NULL
            THEN greatest(extract(epoch FROM j.eta - clock_timestamp()), 0)::float8 END
           AS due_in_seconds
  FROM herald.jobs j
 WHERE j.id = %(id)s;

-- name: api_notification
SELECT id, route, table_name, row_pk, change_ids, recipients, ai, on_ai_failure, priority,
       created_at, due_at
  FROM herald.notifications
 WHERE id = %(id)s;

-- name: api_summary
-- The summary's text (it names people by their aliases only), never its aliases map.
SELECT status, summary, model, prompt_tokens, completion_tokens, error, created_at
  FROM herald.summaries
 WHERE notification_id = %(notification_id)s;

-- name: api_deliveries
SELECT id, recipient, status, attempts, ambiguous, message_id_header, created_at, sent_at,
       error
  FROM herald.deliveries
 WHERE notification_id = ANY(%(notification_ids)s::bigint[])
 ORDER BY notification_id, recipient;

-- name: api_change
-- A change as the orchestrator left it; not its rows (they may hold personal data).
SELECT id, table_name, operation, row_pk, changed_at, claimed_at, outcome, error
  FROM herald.change_log
 WHERE id = %(id)s;

-- name: api_change_notifications
SELECT id, route, table_name, row_pk, change_ids, recipients, ai, on_ai_failure, priority,
       created_at, due_at
  FROM herald.notifications
 WHERE change_ids @> ARRAY[%(id)s::bigint]
 ORDER BY id;

-- name: api_notification_jobs
SELECT id, notification_id, actor, queue, status, attempts, recipient, created_at,
       started_at, finished_at, eta, last_error
  FROM herald.jobs
 WHERE notification_id = ANY(%(notification_ids)s::bigint[])
 ORDER BY notification_id, id;

-- name: api_notification_summaries
SELECT notification_id, status, summary, model, prompt_tokens, completion_tokens, error,
       created_at
  FROM herald.summaries
 WHERE notification_id = ANY(%(notification_ids)s::bigint[]);

-- name: api_notification_deliveries
SELECT id, notification_id, recipient, status, attempts, ambiguous, message_id_header,
       created_at, sent_at, error
  FROM herald.deliveries
 WHERE notification_id = ANY(%(notification_ids)s::bigint[])
 ORDER BY notification_id, recipient;

-- name: api_insert_change
-- A change entered through the API, as herald.record_change() would write it: a table
-- that exists is named schema.table (quoted as the trigger quotes it) and its key is read
-- from its primary key; another name is kept as given, its key from the row's "id".
-- The NOTIFY wakes the orchestrator (delivered at commit, like the trigger's).
WITH target AS (
    SELECT c.oid, format('%%I.%%I', ns.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE c.oid = to_regclass(%(table)s::text)
), pk AS (
    SELECT array_agg(a.attname::text) AS cols
      FROM target t
      JOIN pg_index i ON i.indrelid = t.oid AND i.indisprimary
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
), source AS (
    SELECT coalesce(%(new_row)s::jsonb, %(old_row)s::jsonb) AS doc
), inserted AS (
    INSERT INTO herald.change_log (table_name, operation, row_pk, old_row, new_row)
    SELECT coalesce((SELECT name FROM target), %(table)s::text),
           %(operation)s::text,
           CASE WHEN (SELECT cols FROM pk) IS NOT NULL
                THEN (SELECT jsonb_object_agg(col, s.doc -> col) FROM unnest((SELECT cols FROM pk)) col)
                WHEN s.doc ? 'id' THEN jsonb_build_object('id', s.doc -> 'id') END,
           %(old_row)s::jsonb, %(new_row)s::jsonb
      FROM source s
    RETURNING id, table_name, changed_at
)
SELECT i.id, i.table_name, i.changed_at, pg_notify('herald_changes', '') IS NOT NULL AS woken
  FROM inserted i;

-- name: api_migrations
SELECT name FROM herald.migrations;

-- name: api_health_figures
-- Everything /health and the overview read from PostgreSQL, in one round trip. The
-- counts use the status index (jobs_status_idx); the oldest pending job is the oldest due.
SELECT (SELECT count(*) FROM herald.jobs WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM herald.jobs WHERE status = 'running') AS running,
       (SELECT count(*) FROM herald.jobs WHERE status = 'failed') AS failed,
       (SELECT extract(epoch FROM clock_timestamp() - min(coalesce(eta, created_at)))::float8
          FROM herald.jobs
         WHERE status = 'pending' AND coalesce(eta, created_at) <= clock_timestamp())
           AS oldest_pending_seconds,
       (SELECT count(*) FROM herald.change_log WHERE claimed_at IS NULL) AS unclaimed,
       (SELECT extract(epoch FROM clock_timestamp() - min(changed_at))::float8
          FROM herald.change_log WHERE claimed_at IS NULL) AS oldest_unclaimed_seconds,
       (SELECT max(finished_at) FROM herald.orchestrator_runs WHERE status = 'succeeded')
           AS last_orchestrator_success,
       clock_timestamp() AS now;

-- name: api_stats_percentiles
-- Average and p95 processing time (the attempt that completed) per actor in the window.
SELECT actor,
       avg(extract(epoch FROM finished_at - started_at))::float8 AS mean_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           ::float8 AS p95_seconds,
       count(*) AS n
  FROM herald.jobs
 WHERE status = 'complete' AND started_at IS NOT NULL AND finished_at IS NOT NULL
   AND finished_at > clock_timestamp() - make_interval(secs => %(window_seconds)s)
 GROUP BY actor
 ORDER BY actor;

-- name: api_recent_failures
SELECT id, actor, queue, attempts, recipient, change_id, finished_at, last_error
  FROM herald.jobs
 WHERE status = 'failed'
   AND finished_at > clock_timestamp() - make_interval(secs => %(window_seconds)s)
 ORDER BY finished_at DESC
 LIMIT %(limit)s;
