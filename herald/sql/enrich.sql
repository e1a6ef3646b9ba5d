-- The enrich batch's statements (herald/enrich/batch.py), loaded by name with queries.sql.

-- name: enrich_handoff_batch
-- An enrich batch's hand-off, one statement and one transaction for every job of the batch
-- that has its answer, each as enrich_handoff does for one job: when the job is still
-- running, its summary saved (when its save flag is set), its email jobs written
-- (%(parents)s names the enrich job each belongs to; an open duplicate is not written
-- twice) and the job completed, with its note as its last error. A job no longer running
-- (canceled, or finished by a duplicate delivery) is left alone with its email jobs.
-- Rows: one per job completed (kind 'complete') and one per email job written (kind
-- 'written'). %(breaker)s: as enrich_handoff, a success admitted while closed ends a run of
-- that breaker's failures (NULL: nothing to record). The jobs are locked in id order.
WITH answer AS (
    SELECT *
      FROM unnest(%(job_ids)s::bigint[], %(saves)s::boolean[], %(summary_notifications)s::bigint[],
                  %(statuses)s::text[], %(summaries)s::text[], %(models)s::text[],
                  %(aliases)s::text[], %(prompt_tokens)s::int[], %(completion_tokens)s::int[],
                  %(errors)s::text[], %(notes)s::text[])
           AS a(job_id, save, notification_id, status, summary, model, aliases, prompt_tokens,
                completion_tokens, error, note)
), job AS MATERIALIZED (
    SELECT id FROM herald.jobs
     WHERE id = ANY(%(job_ids)s::bigint[]) AND status = 'running'
     ORDER BY id
       FOR UPDATE
), saved AS (
    INSERT INTO herald.summaries (notification_id, status, summary, model, aliases,
                                  prompt_tokens, completion_tokens, error)
    SELECT a.notification_id, a.status, a.summary, a.model, a.aliases::jsonb,
           a.prompt_tokens, a.completion_tokens, a.error
      FROM answer a
      JOIN job ON job.id = a.job_id
     WHERE a.save
    ON CONFLICT (notification_id) DO UPDATE
       SET status = EXCLUDED.status, summary = EXCLUDED.summary, model = EXCLUDED.model,
           aliases = EXCLUDED.aliases, prompt_tokens = EXCLUDED.prompt_tokens,
           completion_tokens = EXCLUDED.completion_tokens, error = EXCLUDED.error
), written AS (
    INSERT INTO herald.jobs (message_id, actor, queue, notification_id, change_id, recipient,
                             unique_key, priority)
    SELECT u.message_id, u.actor, u.queue, u.notification_id, u.change_id, u.recipient,
           u.unique_key, u.priority
      FROM unnest(%(parents)s::bigint[], %(message_ids)s::uuid[], %(actors)s::text[],
                  %(queues)s::text[], %(notification_ids)s::bigint[],
                  %(change_ids)s::bigint[], %(recipients)s::text[], %(unique_keys)s::text[],
                  %(priorities)s::smallint[])
           AS u(parent, message_id, actor, queue, notification_id, change_id, recipient,
                unique_key, priority)
      JOIN job ON job.id = u.parent
    ON CONFLICT (actor, unique_key) WHERE unique_key IS NOT NULL
                                      AND status IN ('pending', 'running')
    DO NOTHING
    RETURNING id, message_id, actor, queue, priority
), done AS (
    UPDATE herald.jobs j
       SET status = 'complete', finished_at = clock_timestamp(),
           last_error = coalesce(a.note, j.last_error)
      FROM answer a
     WHERE j.id = a.job_id AND j.id IN (SELECT id FROM job)
    RETURNING j.id
), breaker AS (
    UPDATE herald.circuit_breakers
       SET consecutive_failures = 0, updated_at = clock_timestamp()
     WHERE breaker = %(breaker)s::text AND state = 'closed' AND consecutive_failures > 0
    RETURNING breaker
)
SELECT 'complete' AS kind, id, NULL::uuid AS message_id, NULL::text AS actor,
       NULL::text AS queue, NULL::smallint AS priority
  FROM done
 UNION ALL
SELECT 'written', id, message_id, actor, queue, priority
  FROM written;
