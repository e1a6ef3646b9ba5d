-- The enrich step's statements (herald/enrich/), loaded by name with queries.sql.

-- name: enrich_handoff_batch
-- The enrich step's hand-off (herald/enrich/handoff.py), one statement and one transaction
-- for every job of a batch (or the step's one job) that has its answer: when the job is
-- still running, its summary saved (unless its status is 'skipped': an earlier attempt
-- saved it), its email jobs written (one per recipient of its notification, with the enrich
-- job's change and priority; an open duplicate is not written twice) and the job completed,
-- with "summary unavailable: <error>" as its last error when it has one. The email jobs
-- are derived here from the rows the statement locks, as herald.ledger.NewJob would write
-- them (%(email_actor)s and %(email_queue)s; unique key '<actor>:<notification>:<recipient>'):
-- no array of them crosses the wire. A job no longer running (canceled, or finished by a
-- duplicate delivery) is left alone with its email jobs.
-- Rows: one per job completed (kind 'complete') and one per email job written (kind
-- 'written'). %(breaker)s: a success admitted while closed ends a run of that breaker's
-- failures, as breaker_call_succeeded (NULL: nothing to record). The jobs are locked in id
-- order, found by id alone (their status written as none of the others, as job_complete).
-- %(answers)s: a JSON array of one object per job (job_id, status, summary, model, aliases,
-- prompt_tokens, completion_tokens, error), one text parameter where eight arrays cost the
-- worker five times the CPU to send; %(job_ids)s: their job ids.
WITH answer AS (
    SELECT *
      FROM json_to_recordset(%(answers)s::json)
           AS a(job_id bigint, status text, summary text, model text, aliases jsonb,
                prompt_tokens int, completion_tokens int, error text)
), job AS MATERIALIZED (
    SELECT id, notification_id, change_id, priority FROM herald.jobs
     WHERE id = ANY(%(job_ids)s::bigint[])
       AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded')  -- running
     ORDER BY id
       FOR UPDATE
), saved AS (
    INSERT INTO herald.summaries (notification_id, status, summary, model, aliases,
                                  prompt_tokens, completion_tokens, error)
    SELECT job.notification_id, a.status, a.summary, a.model, a.aliases,
           a.prompt_tokens, a.completion_tokens, a.error
      FROM answer a
      JOIN job ON job.id = a.job_id
     WHERE a.status <> 'skipped'
    ON CONFLICT (notification_id) DO UPDATE
       SET status = EXCLUDED.status, summary = EXCLUDED.summary, model = EXCLUDED.model,
           aliases = EXCLUDED.aliases, prompt_tokens = EXCLUDED.prompt_tokens,
           completion_tokens = EXCLUDED.completion_tokens, error = EXCLUDED.error
), written AS (
    INSERT INTO herald.jobs (message_id, actor, queue, notification_id, change_id, recipient,
                             unique_key, priority)
    SELECT gen_random_uuid(), %(email_actor)s, %(email_queue)s, n.id, job.change_id,
           r.recipient,
           CASE WHEN r.recipient <> '' THEN %(email_actor)s || ':' || n.id || ':' || r.recipient
                ELSE %(email_actor)s || ':' || n.id END,
           job.priority
      FROM job
      JOIN herald.notifications n ON n.id = job.notification_id
     CROSS JOIN LATERAL unnest(n.recipients) WITH ORDINALITY AS r(recipient, nth)
     ORDER BY job.id, r.nth
    ON CONFLICT (actor, unique_key) WHERE unique_key IS NOT NULL
                                      AND status IN ('pending', 'running')
    DO NOTHING
    RETURNING id, message_id, actor, queue, priority
), done AS (
    UPDATE herald.jobs j
       SET status = 'complete', finished_at = clock_timestamp(),
           last_error = coalesce('summary unavailable: ' || nullif(a.error, ''), j.last_error)
      FROM answer a
      JOIN job ON job.id = a.job_id
     WHERE j.id = job.id
    RETURNING j.id
), breaker AS (
    UPDATE herald.circuit_breakers
       SET consecutive_failures = 0, updated_at = clock_timestamp()
     WHERE breaker = %(breaker)s::text AND state = 'closed' AND consecutive_failures > 0
    RETURNING breaker
)
SELECT 'complete' AS kind, id, NULL::text AS message_id, NULL::text AS actor,
       NULL::text AS queue, NULL::smallint AS priority
  FROM done
 UNION ALL
SELECT 'written', id, message_id::text, actor, queue, priority  -- text: what a JobRef holds
  FROM written;
