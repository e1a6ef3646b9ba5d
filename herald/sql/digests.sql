-- Digest schedules, the minute tick that claims them and the digest step
-- (herald/digests/store.py, collect.py, deliver.py), loaded by name.

-- name: digest_schedules_list
-- Schedules by id (one, or a page after %(after)s), with the recipient's display name.
SELECT s.id, s.route, s.recipient, r.display_name, s.schedule, s.timezone, s.own_schedule,
       s.own_timezone, s.operations, s.tables, s.paused, s.cursor_at, s.next_due_at,
       s.created_at, s.updated_at
  FROM herald.digest_schedules s
  LEFT JOIN herald.recipients r ON r.address = s.recipient
 WHERE (%(id)s::bigint IS NULL OR s.id = %(id)s::bigint)
   AND (%(route)s::text IS NULL OR s.route = %(route)s::text)
   AND (%(recipient)s::text IS NULL OR s.recipient = %(recipient)s::text)
   AND (%(after)s::bigint IS NULL OR s.id > %(after)s::bigint)
 ORDER BY s.id
 LIMIT %(limit)s;

-- name: digest_schedule_lock
-- One schedule, by id or by (route, recipient), locked for a change; with the recipient's
-- directory timezone (the schedule follows it unless it has its own).
SELECT s.id, s.route, s.recipient, s.schedule, s.timezone, s.own_schedule, s.own_timezone,
       s.operations, s.tables, s.paused, s.cursor_at, s.next_due_at,
       (SELECT r.timezone FROM herald.recipients r WHERE r.address = s.recipient)
       AS recipient_timezone
  FROM herald.digest_schedules s
 WHERE (%(id)s::bigint IS NOT NULL AND s.id = %(id)s::bigint)
    OR (%(id)s::bigint IS NULL AND s.route = %(route)s::text AND s.recipient = %(recipient)s::text)
   FOR UPDATE OF s;

-- name: recipient_timezone
SELECT timezone FROM herald.recipients WHERE address = %(address)s;

-- name: digest_schedule_upsert
-- Create a schedule, or change one (its cursor stays: the next digest still holds
-- everything since the last).
INSERT INTO herald.digest_schedules AS s
       (route, recipient, schedule, timezone, own_schedule, own_timezone, operations, tables,
        paused, cursor_at, next_due_at)
VALUES (%(route)s, %(recipient)s, %(schedule)s, %(timezone)s, %(own_schedule)s,
        %(own_timezone)s, %(operations)s, %(tables)s, %(paused)s, %(now)s, %(next_due_at)s)
ON CONFLICT (route, recipient) DO UPDATE
   SET schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone,
       own_schedule = EXCLUDED.own_schedule, own_timezone = EXCLUDED.own_timezone,
       operations = EXCLUDED.operations, tables = EXCLUDED.tables, paused = EXCLUDED.paused,
       next_due_at = EXCLUDED.next_due_at, updated_at = clock_timestamp()
RETURNING id;

-- name: digest_schedule_delete
DELETE FROM herald.digest_schedules WHERE id = %(id)s RETURNING id;

-- name: digest_unscheduled
-- Recipients of a digest route with notifications waiting and no schedule yet (the
-- route's calendar is theirs from now), with their directory timezone.
SELECT DISTINCT i.route, i.recipient, r.timezone AS recipient_timezone
  FROM herald.digest_items i
  LEFT JOIN herald.recipients r ON r.address = i.recipient
 WHERE i.run_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM herald.digest_schedules s
                    WHERE s.route = i.route AND s.recipient = i.recipient)
 LIMIT %(limit)s;

-- name: digest_schedules_insert
INSERT INTO herald.digest_schedules (route, recipient, schedule, timezone, cursor_at, next_due_at)
SELECT u.route, u.recipient, u.schedule, u.timezone, u.cursor_at, u.next_due_at
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(route text, recipient text, schedule text, timezone text, cursor_at timestamptz,
            next_due_at timestamptz)
ON CONFLICT (route, recipient) DO NOTHING;

-- name: digest_schedules_to_reconcile
-- Schedules whose calendar or timezone in effect is no longer what the route (for those
-- that follow it), their own settings and the recipient's timezone say: the route's
-- digest or digest_timezone changed in herald.toml, or the recipient's timezone changed.
-- %(routes)s: every digest route's {route, schedule, timezone}.
WITH routes AS (
    SELECT * FROM jsonb_to_recordset(%(routes)s::jsonb) AS r(route text, schedule text, timezone text)
), wanted AS (
    SELECT s.id, coalesce(s.own_schedule, rt.schedule) AS schedule,
           coalesce(s.own_timezone, rc.timezone, rt.timezone, 'UTC') AS timezone
      FROM herald.digest_schedules s
      LEFT JOIN routes rt ON rt.route = s.route
      LEFT JOIN herald.recipients rc ON rc.address = s.recipient
)
SELECT s.id, w.schedule, w.timezone
  FROM herald.digest_schedules s
  JOIN wanted w ON w.id = s.id
 WHERE w.schedule IS NOT NULL
   AND (s.schedule <> w.schedule OR s.timezone <> w.timezone)
 ORDER BY s.id
 LIMIT %(limit)s
   FOR UPDATE OF s SKIP LOCKED;

-- name: digest_schedules_recomputed
UPDATE herald.digest_schedules s
   SET schedule = u.schedule, timezone = u.timezone, next_due_at = u.next_due_at,
       updated_at = clock_timestamp()
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(id bigint, schedule text, timezone text, next_due_at timestamptz)
 WHERE s.id = u.id;

-- name: digest_claim_due
-- Schedules due at %(now)s (the scheduler's clock), oldest due first; SKIP LOCKED: two
-- schedulers at once pass each other, never claim one schedule twice.
SELECT s.id, s.route, s.recipient, s.schedule, s.timezone, s.cursor_at, s.next_due_at,
       s.operations, s.tables
  FROM herald.digest_schedules s
 WHERE NOT s.paused AND s.next_due_at <= %(now)s
 ORDER BY s.next_due_at, s.id
 LIMIT %(limit)s
   FOR UPDATE OF s SKIP LOCKED;

-- name: digest_open_runs
-- Claim a period of each schedule in %(claims)s, in the transaction that advances its
-- cursor and next due time: the run row (unique per schedule and period: never two
-- digests for one period), every waiting item from before the period's end (`included`
-- when it passes the schedule's filters on operation and table). One row per run opened,
-- with its included items and whether the recipient is muted for the route.
WITH claim AS (
    SELECT *
      FROM jsonb_to_recordset(%(claims)s::jsonb)
           AS c(schedule_id bigint, route text, recipient text, period_start timestamptz,
                period_end timestamptz, next_due_at timestamptz, operations text[],
                tables text[])
), runs AS (
    INSERT INTO herald.digest_runs (schedule_id, route, recipient, period_start, period_end)
    SELECT c.schedule_id, c.route, c.recipient, c.period_start, c.period_end FROM claim c
    ON CONFLICT (schedule_id, period_end) DO NOTHING
    RETURNING id, schedule_id, route, recipient, period_end
), collected AS (
    UPDATE herald.digest_items i
       SET run_id = r.id,
           included = (c.operations IS NULL OR i.operation = ANY (c.operations))
                  AND (c.tables IS NULL
                       OR EXISTS (SELECT 1 FROM unnest(c.tables) AS t(name)
                                   WHERE i.table_name = t.name
                                      OR right(i.table_name, length(t.name) + 1) = '.' || t.name))
      FROM runs r
      JOIN claim c ON c.schedule_id = r.schedule_id
     WHERE i.route = r.route AND i.recipient = r.recipient AND i.run_id IS NULL
       AND i.changed_at < r.period_end
    RETURNING i.run_id, i.included
), advanced AS (
    UPDATE herald.digest_schedules s
       SET cursor_at = c.period_end, next_due_at = c.next_due_at, updated_at = clock_timestamp()
      FROM claim c
     WHERE s.id = c.schedule_id
    RETURNING s.id
)
SELECT r.id AS run_id, r.schedule_id, r.route, r.recipient, r.period_end,
       (SELECT count(*) FROM collected k WHERE k.run_id = r.id AND k.included)::int AS items,
       EXISTS (SELECT 1 FROM herald.recipient_mutes m
                WHERE m.address = r.recipient AND m.route IN (r.route, '*')
                  AND (m.until IS NULL OR m.until > %(now)s)) AS muted,
       (SELECT count(*) FROM advanced) AS advanced
  FROM runs r;

-- name: digest_finish_runs
-- Each opened run's outcome (pending: to send; empty; muted) and, for each to send, its
-- send_digest job, written in the same transaction (the ledger is the outbox: published
-- after commit, by the sweeper when that fails).
WITH decided AS (
    SELECT *
      FROM jsonb_to_recordset(%(runs)s::jsonb)
           AS d(run_id bigint, status text, items int, message_id uuid, recipient text,
                unique_key text, priority smallint, message_id_header text)
), jobs AS (
    INSERT INTO herald.jobs (message_id, actor, queue, recipient, unique_key, priority)
    SELECT d.message_id, 'send_digest', %(queue)s, d.recipient, d.unique_key, d.priority
      FROM decided d
     WHERE d.status = 'pending'
    ON CONFLICT (actor, unique_key) WHERE unique_key IS NOT NULL
                                      AND status IN ('pending', 'running')
    DO NOTHING
    RETURNING id, message_id, actor, queue, priority, unique_key
), marked AS (
    UPDATE herald.digest_runs r
       SET status = d.status, items = d.items, job_id = j.id,
           message_id_header = d.message_id_header
      FROM decided d
      LEFT JOIN jobs j ON j.unique_key = d.unique_key
     WHERE r.id = d.run_id
    RETURNING r.id
)
SELECT j.id, j.message_id, j.actor, j.queue, j.priority, (SELECT count(*) FROM marked) AS marked
  FROM jobs j;

-- name: digest_run_for_job
-- The digest step's read: the run a send_digest job sends, whether its recipient is muted
-- now, and their directory entry.
SELECT d.id, d.schedule_id, d.route, d.recipient, d.period_start, d.period_end, d.status,
       d.items, d.message_id_header, d.attempts, d.overview_status, d.overview,
       d.overview_aliases, s.schedule, s.timezone, rc.display_name,
       (SELECT i.to_address FROM herald.digest_items i WHERE i.run_id = d.id
         ORDER BY i.changed_at DESC, i.id DESC LIMIT 1) AS to_address,
       EXISTS (SELECT 1 FROM herald.recipient_mutes m
                WHERE m.address = d.recipient AND m.route IN (d.route, '*')
                  AND (m.until IS NULL OR m.until > clock_timestamp())) AS muted
  FROM herald.digest_runs d
  JOIN herald.digest_schedules s ON s.id = d.schedule_id
  LEFT JOIN herald.recipients rc ON rc.address = d.recipient
 WHERE d.job_id = %(job_id)s;

-- name: digest_run_items
-- The newest %(limit)s included notifications of a run, with their change (a digest
-- route's notification reports one change), and the table's columns in order.
SELECT i.id AS item_id, i.notification_id, c.id, c.table_name, c.operation, c.row_pk,
       c.old_row, c.new_row, c.changed_at,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = to_regclass(c.table_name) AND a.attnum > 0
           AND NOT a.attisdropped) AS table_columns
  FROM herald.digest_items i
  JOIN herald.notifications n ON n.id = i.notification_id
  JOIN herald.change_log c ON c.id = n.change_ids[1]
 WHERE i.run_id = %(run_id)s AND i.included
 ORDER BY i.changed_at DESC, i.id DESC
 LIMIT %(limit)s;

-- name: digest_overview_saved
-- The AI's overview, aliased, kept so a retried send does not ask the model again.
UPDATE herald.digest_runs
   SET overview_status = %(status)s, overview = %(overview)s, overview_aliases = %(aliases)s,
       error = %(error)s
 WHERE id = %(id)s;

-- name: digest_try_lock
-- Held on one connection for the duration of the SMTP send (as try_delivery_lock).
SELECT pg_try_advisory_lock(hashtextextended(%(key)s, 0)) AS locked;

-- name: digest_release_lock
SELECT pg_advisory_unlock(hashtextextended(%(key)s, 0));

-- name: digest_sending
-- Claim the run for this attempt ('sending'). A run found 'sending' while its lock was
-- free was left by a worker that died, maybe after the server accepted it: sent again
-- with the same Message-ID and flagged ambiguous. A run already sent comes back 'sent'.
UPDATE herald.digest_runs
   SET status = CASE WHEN status = 'sent' THEN status ELSE 'sending' END,
       attempts = attempts + CASE WHEN status = 'sent' THEN 0 ELSE 1 END,
       ambiguous = ambiguous OR status = 'sending'
 WHERE id = %(id)s
RETURNING status, ambiguous, (status = 'sent') AS already_sent;

-- name: digest_sent
-- The server accepted it: the run sent (the overview's alias map, personal data, deleted),
-- the job complete, the counters (digests sent, items per digest) and, when the call was
-- admitted by a closed breaker, a run of failures ended; one statement, one transaction.
-- Then the advisory lock released.
WITH sent AS (
    UPDATE herald.digest_runs
       SET status = 'sent', sent_at = clock_timestamp(), error = NULL, overview_aliases = NULL
     WHERE id = %(id)s
    RETURNING id
), done AS (
    UPDATE herald.jobs
       SET status = 'complete', finished_at = clock_timestamp(),
           last_error = coalesce(%(note)s, last_error)
     WHERE id = %(job_id)s  -- running, found by its id (queries.sql, job_complete):
       AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded')
    RETURNING id
), counted AS (
    INSERT INTO herald.counters AS c (metric, label, value)
    SELECT u.metric, u.label, u.value
      FROM jsonb_to_recordset(%(counts)s::jsonb) AS u(metric text, label text, value float8)
    ON CONFLICT (metric, label) DO UPDATE SET value = c.value + EXCLUDED.value
), breaker AS (
    UPDATE herald.circuit_breakers
       SET consecutive_failures = 0, updated_at = clock_timestamp()
     WHERE breaker = %(breaker)s AND state = 'closed' AND consecutive_failures > 0
    RETURNING breaker
)
SELECT (SELECT count(*) FROM sent) AS sent, (SELECT count(*) FROM done) AS completed,
       pg_advisory_unlock(hashtextextended(%(key)s, 0)) AS unlocked;

-- name: digest_released
-- The send failed for sure (the server said no, or a transient error): tried again later.
UPDATE herald.digest_runs
   SET status = %(status)s, error = %(error)s,
       overview_aliases = CASE WHEN %(status)s = 'failed' THEN NULL ELSE overview_aliases END
 WHERE id = %(id)s AND status = 'sending';

-- name: digest_skipped_muted
-- Muted since its period was claimed: nothing is sent, the job completes, counted.
WITH run AS (
    UPDATE herald.digest_runs SET status = 'muted', overview_aliases = NULL
     WHERE id = %(id)s AND status IN ('pending', 'failed')
    RETURNING id
), counted AS (
    INSERT INTO herald.counters AS c (metric, label, value)
    SELECT 'digests_skipped', 'muted', 1 FROM run
    ON CONFLICT (metric, label) DO UPDATE SET value = c.value + EXCLUDED.value
)
UPDATE herald.jobs
   SET status = 'complete', finished_at = clock_timestamp(),
       last_error = 'not sent: the recipient is muted for this route'
 WHERE id = %(job_id)s  -- running, found by its id (queries.sql, job_complete)
   AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded');
