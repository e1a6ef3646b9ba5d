-- Every query Herald's services run, loaded by name (herald/sql/__init__.py).

-- name: lock_changes
-- Lock up to %(limit)s unclaimed changes for this batch's transaction without writing them
-- yet: claimed_at is set with the outcome by write_batch, in the same transaction, so each
-- row is written once. SKIP LOCKED lets concurrent claimers pass each other; no high-water
-- mark, so a change committed late (with a lower id) is still found.
-- Routing needs no row values: old_row and new_row are never fetched, only their JSON
-- types, so the orchestrator's memory does not depend on what the rows hold. Each change is
-- measured for the stages that do load it: the bytes of its JSON as text (row_pk, old_row
-- and new_row together at most %(max_bytes)s) and, only when it fits, whether one of them
-- nests deeper than %(max_depth)s levels (`too_deep` names the first; the probe stops at
-- that level). A change over either limit comes back without its row_pk: psycopg's JSON
-- decoder recurses once per level and raises RecursionError on thousands.
WITH locked AS MATERIALIZED (
    SELECT id
      FROM herald.change_log
     WHERE claimed_at IS NULL
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), measured AS MATERIALIZED (
    SELECT c.id, s.pk_bytes, s.old_bytes, s.new_bytes,
           s.pk_bytes + s.old_bytes + s.new_bytes <= %(max_bytes)s AS fits,
           CASE WHEN s.pk_bytes + s.old_bytes + s.new_bytes > %(max_bytes)s THEN NULL
                WHEN herald.jsonb_nested_at_least(c.row_pk, %(max_depth)s + 1) THEN 'row_pk'
                WHEN herald.jsonb_nested_at_least(c.old_row, %(max_depth)s + 1) THEN 'old_row'
                WHEN herald.jsonb_nested_at_least(c.new_row, %(max_depth)s + 1) THEN 'new_row'
           END AS too_deep
      FROM locked
      JOIN herald.change_log c USING (id)
     CROSS JOIN LATERAL (
           SELECT coalesce(octet_length(c.row_pk::text), 0) AS pk_bytes,
                  coalesce(octet_length(c.old_row::text), 0) AS old_bytes,
                  coalesce(octet_length(c.new_row::text), 0) AS new_bytes
           OFFSET 0  -- measured once, not once per mention
     ) s
)
SELECT c.id, c.table_name, c.operation, c.changed_at,
       CASE WHEN m.fits AND m.too_deep IS NULL THEN c.row_pk END AS row_pk,
       jsonb_typeof(c.old_row) AS old_row_type, jsonb_typeof(c.new_row) AS new_row_type,
       m.pk_bytes, m.old_bytes, m.new_bytes, m.too_deep
  FROM measured m
  JOIN herald.change_log c USING (id)
 ORDER BY c.id;

-- name: write_batch
-- One statement for a batch: every change's claim and outcome, one notification per routed
-- change (ids from next_notification_ids), their first jobs and a digest route's items. A job whose
-- (actor, unique_key) is already open is not written twice (as insert_jobs). The jobs'
-- foreign keys are checked at the end of the statement, when the notifications exist.
-- Rows come as one JSON array each (a C encoder in Python, one parse here): psycopg
-- dumps a list parameter element by element in Python, about a fifth of a batch's time.
WITH outcomes AS (
    UPDATE herald.change_log AS c
       SET claimed_at = clock_timestamp(), outcome = u.outcome, error = u.error
      FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS u(id bigint, outcome text, error text)
     WHERE c.id = u.id
), notifications AS (
    INSERT INTO herald.notifications
           (id, route, table_name, row_pk, change_ids, recipients, ai, on_ai_failure, priority)
    SELECT u.id, u.route, u.table_name, u.row_pk, ARRAY[u.change_id], u.recipients, u.ai,
           u.on_ai_failure, u.priority
      FROM jsonb_to_recordset(%(notifications)s::jsonb)
           AS u(id bigint, route text, table_name text, row_pk jsonb, change_id bigint,
                recipients text[], ai boolean, on_ai_failure text, priority text)
), digest_items AS (
    -- A digest route's notifications, one row per recipient, wait for their digest.
    INSERT INTO herald.digest_items
           (notification_id, route, recipient, to_address, table_name, operation, changed_at)
    SELECT u.notification_id, u.route, u.recipient, u.to_address, u.table_name, u.operation,
           u.changed_at
      FROM jsonb_to_recordset(%(digest_items)s::jsonb)
           AS u(notification_id bigint, route text, recipient text, to_address text,
                table_name text, operation text, changed_at timestamptz)
)
INSERT INTO herald.jobs (message_id, actor, queue, notification_id, change_id, recipient,
                         unique_key, priority)
SELECT gen_random_uuid(), u.actor, u.queue, u.notification_id, u.change_id, u.recipient,
       u.unique_key, u.priority
  FROM jsonb_to_recordset(%(jobs)s::jsonb)
       AS u(actor text, queue text, notification_id bigint, change_id bigint, recipient text,
            unique_key text, priority smallint)
ON CONFLICT (actor, unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')
DO NOTHING
RETURNING id, message_id, actor, queue, priority;

-- name: try_orchestrator_lock
-- One batch at a time across every process and machine: a transaction-level advisory lock.
SELECT pg_try_advisory_xact_lock(%(key)s) AS locked;

-- name: start_run
INSERT INTO herald.orchestrator_runs DEFAULT VALUES RETURNING id;

-- name: finish_run
UPDATE herald.orchestrator_runs
   SET finished_at = clock_timestamp(), status = %(status)s, error = %(error)s,
       batches = %(batches)s, claimed = %(claimed)s, routed = %(routed)s, skipped = %(skipped)s,
       failed = %(failed)s, published = %(published)s, republished = %(republished)s
 WHERE id = %(id)s;

-- name: next_notification_ids
SELECT nextval('herald.notifications_id_seq') AS id FROM generate_series(1, %(n)s);

-- name: insert_jobs
-- Writes ledger rows; a job whose (actor, unique_key) is already open is not written twice.
INSERT INTO herald.jobs (message_id, actor, queue, notification_id, change_id, recipient,
                         unique_key, priority)
SELECT u.message_id, u.actor, u.queue, u.notification_id, u.change_id, u.recipient,
       u.unique_key, u.priority
  FROM unnest(%(message_ids)s::uuid[], %(actors)s::text[], %(queues)s::text[],
              %(notification_ids)s::bigint[], %(change_ids)s::bigint[], %(recipients)s::text[],
              %(unique_keys)s::text[], %(priorities)s::smallint[])
       AS u(message_id, actor, queue, notification_id, change_id, recipient, unique_key, priority)
ON CONFLICT (actor, unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running')
DO NOTHING
RETURNING id, message_id, actor, queue, priority;

-- name: mark_published
UPDATE herald.jobs SET published_at = clock_timestamp() WHERE id = ANY(%(ids)s::bigint[]);

-- name: claim_unpublished
-- Jobs written but never published (a crash between commit and publish): publish again.
SELECT id, message_id, actor, queue, priority
  FROM herald.jobs
 WHERE status = 'pending' AND published_at IS NULL AND eta IS NULL
   AND created_at < clock_timestamp() - make_interval(secs => %(grace_seconds)s)
 ORDER BY id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: job_start_load
-- Start one job or a batch (%(ids)s): only pending or running (redelivered after a crash)
-- jobs run; canceled, superseded, complete and failed ones are not. In the same statement, everything each
-- job's step reads: the notification, its changes (one row each, in id order; one row with
-- NULL change columns when it has none), its summary and the circuit breakers' states.
-- Rows come in job id order. A job that must not run comes back as one row with
-- started = false and its status (nothing else loaded); an unknown job as no row. The
-- SELECT reads the snapshot from before the UPDATE, so found_status is the status the job
-- had. "Not finished" (rather than "pending or running") is a test no index answers, so
-- the jobs are found by id whatever the statistics say of open jobs (migration 0010).
WITH started AS (
    UPDATE herald.jobs
       SET status = 'running', attempts = attempts + 1, started_at = clock_timestamp(), eta = NULL
     WHERE id = ANY(%(ids)s::bigint[])
       AND status NOT IN ('complete', 'failed', 'canceled', 'superseded')
    RETURNING id, attempts
)
SELECT j.id AS job_id, j.status AS found_status, s.id IS NOT NULL AS started,
       s.attempts AS job_attempts, j.notification_id, j.change_id AS job_change_id, j.recipient,
       j.message_id::text AS job_message_id, j.priority AS job_priority, j.actor AS job_actor,
       n.id AS n_id, n.route AS n_route, n.table_name AS n_table_name, n.row_pk AS n_row_pk,
       n.change_ids AS n_change_ids, n.recipients AS n_recipients, n.ai AS n_ai,
       n.on_ai_failure AS n_on_ai_failure, n.priority AS n_priority,
       n.created_at AS n_created_at,
       -- How long it has been due (debounced: since due_at), by the database's clock: the
       -- enrich step's deadline for a send route's summary ([ai] max_delay_seconds).
       extract(epoch FROM clock_timestamp() - greatest(n.created_at, n.due_at))::float8
           AS n_due_for_seconds,
       sm.status AS sm_status, sm.summary AS sm_summary, sm.model AS sm_model,
       sm.aliases AS sm_aliases, sm.error AS sm_error,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = to_regclass(n.table_name) AND a.attnum > 0
           AND NOT a.attisdropped) AS table_columns,
       (SELECT jsonb_object_agg(b.breaker, b.state) FROM herald.circuit_breakers b) AS breakers,
       c.id, c.table_name, c.operation, c.row_pk, c.old_row, c.new_row, c.changed_at
  FROM herald.jobs j
  LEFT JOIN started s ON s.id = j.id
  LEFT JOIN herald.notifications n ON s.id IS NOT NULL AND n.id = j.notification_id
  LEFT JOIN herald.summaries sm ON sm.notification_id = n.id
  LEFT JOIN herald.change_log c ON c.id = ANY (n.change_ids)
 WHERE j.id = ANY(%(ids)s::bigint[])
 ORDER BY j.id, c.id;

-- name: job_complete
-- "running" is written as "none of the others" here and in the statements below: a test
-- no index answers, so the job is found by its id. `status = 'running'` let PostgreSQL,
-- when its statistics saw no running job, pick jobs_status_idx and read every running job
-- from the heap to test its id (hundreds while email batches run).
UPDATE herald.jobs
   SET status = 'complete', finished_at = clock_timestamp()
 WHERE id = %(id)s
   AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded');

-- name: jobs_handed_back
-- Jobs a batch started but did not try (its time budget was spent, or an earlier job in it
-- failed): pending again, the attempt given back, to be published again at once.
UPDATE herald.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), last_error = %(reason)s,
       published_at = NULL
 WHERE id = ANY(%(ids)s::bigint[])
   AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded')
RETURNING id, message_id, actor, queue, priority;

-- name: job_retrying
-- Running (written as in job_complete).
UPDATE herald.jobs
   SET status = 'pending', last_error = %(error)s
 WHERE id = %(id)s
   AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded');

-- name: job_failed
-- Failed for good. When it is an email job and the notification's last open one, the
-- summary's alias map (the personal data the aliases stand for) is deleted with it: every
-- delivery is final (see delivery_sent_job_complete). 'null', not '{}': "deleted", so an
-- email sent again later (`herald jobs retry`) says its summary was withdrawn.
WITH failed AS (
    UPDATE herald.jobs
       SET status = 'failed', last_error = %(error)s, finished_at = clock_timestamp()
     WHERE id = %(id)s AND status IN ('running', 'pending')
    RETURNING id, notification_id, actor
)
UPDATE herald.summaries s
   SET aliases = 'null'::jsonb
  FROM failed
 WHERE failed.actor = 'send_email' AND s.notification_id = failed.notification_id
   AND s.aliases NOT IN ('{}'::jsonb, 'null'::jsonb)
   AND NOT EXISTS (SELECT 1 FROM herald.jobs o
                    WHERE o.notification_id = failed.notification_id AND o.actor = 'send_email'
                      AND o.status NOT IN ('complete', 'failed', 'canceled', 'superseded')
                      AND o.id <> failed.id);

-- name: job_delayed
UPDATE herald.jobs
   SET published_at = clock_timestamp(), eta = clock_timestamp() + make_interval(secs => %(delay_seconds)s)
 WHERE id = %(id)s;

-- name: try_delivery_lock
-- Held on one connection for the duration of an SMTP send; released by PostgreSQL itself
-- if the worker dies, which is how a later attempt tells "crashed" from "still sending".
SELECT pg_try_advisory_lock(hashtextextended(%(key)s, 0)) AS locked;

-- name: release_delivery_lock
SELECT pg_advisory_unlock(hashtextextended(%(key)s, 0));

-- name: insert_delivery
INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, status, attempts)
VALUES (%(notification_id)s, %(recipient)s, %(message_id_header)s, 'sending', 1)
ON CONFLICT (notification_id, recipient) DO NOTHING
RETURNING id, status, attempts, ambiguous;

-- name: lock_and_insert_delivery
-- The email step's fast path (no rate limit, breaker closed): the delivery's advisory lock
-- (as try_delivery_lock) and, only when it was taken, the delivery row claimed 'sending'
-- (as insert_delivery), in one statement. locked = false: another worker is sending it;
-- locked = true with no id: the row exists (lock_delivery says what became of it). The
-- session-level lock outlives the statement, whatever happens to its transaction.
WITH l AS MATERIALIZED (
    SELECT pg_try_advisory_lock(hashtextextended(%(key)s, 0)) AS locked
), ins AS (
    INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, status,
                                   attempts)
    SELECT %(notification_id)s, %(recipient)s, %(message_id_header)s, 'sending', 1
      FROM l
     WHERE l.locked
    ON CONFLICT (notification_id, recipient) DO NOTHING
    RETURNING id, status, attempts, ambiguous
)
SELECT l.locked, ins.id, ins.status, ins.attempts, ins.ambiguous
  FROM l LEFT JOIN ins ON true;

-- name: lock_delivery
SELECT id, status, attempts, ambiguous FROM herald.deliveries
 WHERE notification_id = %(notification_id)s AND recipient = %(recipient)s
   FOR UPDATE;

-- name: delivery_attempt
-- Another attempt on an existing delivery. `ambiguous` is set when the previous attempt
-- was left 'sending' (its worker died, maybe after the server accepted the message).
UPDATE herald.deliveries
   SET status = 'sending', attempts = attempts + 1, ambiguous = ambiguous OR %(ambiguous)s
 WHERE id = %(id)s
RETURNING id, status, attempts, ambiguous;

-- name: delivery_sent_job_complete
-- After the SMTP server accepted: the delivery is sent, the job complete and, when the call
-- was admitted by a closed breaker, a run of failures ended (as breaker_call_succeeded;
-- %(breaker)s is NULL without a breaker), all in one statement and so one transaction; and
-- the delivery's advisory lock released (as release_delivery_lock). Released before the
-- commit, another attempt may take the lock at once: it then waits on the row (lock_delivery
-- is FOR UPDATE) and reads it 'sent', never 'sending'.
-- When this was the notification's last open email job, every delivery is final: the
-- summary's alias map (personal data) is deleted in the same statement (as in job_failed).
-- Two last jobs committing at the same instant each see the other still open and leave
-- the map; it then goes with the notification (retention). "Open" is written "not
-- finished", a test no index answers: the other jobs are read through the notification's
-- index (its two or three jobs), never by scanning every open job.
-- The map is read only when there is one to forget (aliases neither '{}' nor 'null'); a
-- notification without a summary costs one index probe.
WITH sent AS (
    UPDATE herald.deliveries SET status = 'sent', sent_at = clock_timestamp(), error = NULL
     WHERE id = %(delivery_id)s
    RETURNING id
), done AS (
    UPDATE herald.jobs
       SET status = 'complete', finished_at = clock_timestamp(),
           last_error = COALESCE(%(note)s, last_error)
     WHERE id = %(job_id)s  -- running, as in job_complete
       AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded')
    RETURNING id, notification_id
), forgotten AS (
    UPDATE herald.summaries s
       SET aliases = 'null'::jsonb
      FROM done
     WHERE s.notification_id = done.notification_id
       AND s.aliases NOT IN ('{}'::jsonb, 'null'::jsonb)
       AND NOT EXISTS (SELECT 1 FROM herald.jobs o
                        WHERE o.notification_id = done.notification_id
                          AND o.actor = 'send_email'
                          AND o.status NOT IN ('complete', 'failed', 'canceled', 'superseded')
                          AND o.id <> done.id)
    RETURNING s.notification_id
), breaker AS (
    UPDATE herald.circuit_breakers
       SET consecutive_failures = 0, updated_at = clock_timestamp()
     WHERE breaker = %(breaker)s AND state = 'closed' AND consecutive_failures > 0
    RETURNING breaker
)
SELECT (SELECT count(*) FROM sent) AS sent, (SELECT count(*) FROM done) AS completed,
       pg_advisory_unlock(hashtextextended(%(key)s, 0)) AS unlocked;

-- name: delivery_failed
UPDATE herald.deliveries SET status = 'failed', error = %(error)s WHERE id = %(id)s;

-- name: delivery_released
-- A send that failed for sure (the server said no): not ambiguous, can be tried again.
UPDATE herald.deliveries SET status = 'failed', error = %(error)s WHERE id = %(id)s AND status = 'sending';

-- name: track_table
SELECT herald.track(%(table)s::regclass);

-- name: claim_lost_retries
-- A failed attempt whose retry never made it back to the broker (Dramatiq acks the original
-- even when re-enqueueing the retry fails), or whose due time passed long ago.
SELECT id, message_id, actor, queue, priority
  FROM herald.jobs
 WHERE status = 'pending' AND attempts > 0
   AND ((eta IS NULL AND started_at < clock_timestamp() - make_interval(secs => %(grace_seconds)s))
        OR eta < clock_timestamp() - make_interval(secs => %(grace_seconds)s))
 ORDER BY id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: claim_stale_running
-- Running far past any time limit: its worker died and the message is gone.
UPDATE herald.jobs
   SET status = 'pending', last_error = coalesce(last_error || '; ', '')
                                        || 'requeued by the sweeper: its worker stopped answering'
 WHERE id IN (SELECT id FROM herald.jobs
               WHERE status = 'running'
                 AND started_at < clock_timestamp() - make_interval(secs => %(stale_seconds)s)
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, message_id, actor, queue, priority;

-- name: mark_republished
-- Due now: the sweeper looks again only if it is still not picked up a grace period later.
UPDATE herald.jobs SET published_at = clock_timestamp(), eta = clock_timestamp()
 WHERE id = ANY(%(ids)s::bigint[]);

-- name: open_debounced_notification
-- The latest notification for this row and route still collecting changes: none of its
-- jobs has been published or started.
SELECT n.id, n.change_ids, n.first_change_at
  FROM herald.notifications n
 WHERE n.debounce_key = %(key)s
   AND EXISTS (SELECT 1 FROM herald.jobs j WHERE j.notification_id = n.id)
   AND NOT EXISTS (SELECT 1 FROM herald.jobs j
                    WHERE j.notification_id = n.id
                      AND (j.status <> 'pending' OR j.published_at IS NOT NULL))
 ORDER BY n.id DESC
 LIMIT 1
   FOR UPDATE;

-- name: supersede_jobs
UPDATE herald.jobs
   SET status = 'superseded', finished_at = clock_timestamp(),
       last_error = 'superseded by notification ' || %(by)s
 WHERE notification_id = %(notification_id)s AND status = 'pending' AND published_at IS NULL;

-- name: insert_debounced_notification
-- Due when the row has been quiet for the window, or at the latest window_max after its
-- first change, whichever comes first.
INSERT INTO herald.notifications
       (route, table_name, row_pk, change_ids, recipients, ai, on_ai_failure, priority,
        debounce_key, first_change_at, due_at)
VALUES (%(route)s, %(table_name)s, %(row_pk)s, %(change_ids)s, %(recipients)s, %(ai)s,
        %(on_ai_failure)s, %(priority)s, %(key)s, %(first_change_at)s,
        least(clock_timestamp() + make_interval(secs => %(window)s),
              %(first_change_at)s::timestamptz + make_interval(secs => %(window_max)s)))
RETURNING id, due_at;

-- name: set_jobs_eta
UPDATE herald.jobs SET eta = %(eta)s WHERE id = ANY(%(ids)s::bigint[]);

-- name: claim_due
-- Debounced jobs whose window has closed: publish them now.
SELECT id, message_id, actor, queue, priority
  FROM herald.jobs
 WHERE status = 'pending' AND published_at IS NULL AND eta <= clock_timestamp()
 ORDER BY eta, id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;
