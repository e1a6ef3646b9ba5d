-- The exporter's scrape-time reads (monitoring/exporter.py), loaded by name
-- (monitoring/sql/__init__.py). Read-only; one round trip per scrape.

-- name: exporter_snapshot
-- One row per figure: kind, actor, queue, status, value.
--   jobs        ledger jobs per (actor, queue, status); pending includes delayed jobs
--   oldest      seconds since the oldest pending job of an actor became due (its eta,
--               else its creation); jobs delayed into the future are not due yet
--   unclaimed   change-log rows the orchestrator has not claimed
--   last_success unix time the orchestrator last finished a run successfully (0: never)
--   breakers    1 when herald.circuit_breakers exists (then `circuit_breakers` is read)
--   digests     1 when herald.counters exists (migration 0008; then `digest_figures` is read)
-- The job counts and `oldest` use jobs_status_idx (status, actor).
WITH job_counts AS (
    SELECT actor, queue, status, count(*)::float8 AS n
      FROM herald.jobs
     GROUP BY actor, queue, status
), oldest AS (
    SELECT actor,
           extract(epoch FROM clock_timestamp() - min(coalesce(eta, created_at)))::float8 AS age
      FROM herald.jobs
     WHERE status = 'pending' AND coalesce(eta, created_at) <= clock_timestamp()
     GROUP BY actor
)
SELECT 'jobs' AS kind, actor, queue, status, n AS value FROM job_counts
UNION ALL
SELECT 'oldest', actor, NULL, NULL, greatest(age, 0) FROM oldest
UNION ALL
SELECT 'unclaimed', NULL, NULL, NULL,
       (SELECT count(*) FROM herald.change_log WHERE claimed_at IS NULL)::float8
UNION ALL
SELECT 'last_success', NULL, NULL, NULL,
       coalesce((SELECT extract(epoch FROM max(finished_at))
                   FROM herald.orchestrator_runs WHERE status = 'succeeded'), 0)::float8
UNION ALL
SELECT 'breakers', NULL, NULL, NULL,
       (to_regclass('herald.circuit_breakers') IS NOT NULL)::int::float8
UNION ALL
SELECT 'digests', NULL, NULL, NULL, (to_regclass('herald.counters') IS NOT NULL)::int::float8;

-- name: circuit_breakers
-- Only run when the table exists (migration 0003 creates it; guarded so an exporter in
-- front of an older schema still works). Shape:
-- one row per breaker, `breaker` text and `open` boolean.
SELECT breaker, open FROM herald.circuit_breakers;

-- name: changes_not_routed
-- Claimed changes that became no notification, by outcome and reason, read from what the
-- orchestrator writes (orchestrator/routing.py, herald/changes.py): skipped 'no matching
-- route' -> no_route, "route 'x' has no recipients" -> no_recipients; failed over a
-- [limits] size or depth ("...; not loaded or sent") -> over_limit, any other failure (a
-- malformed change) -> malformed. The partial index change_log_not_routed_idx holds just
-- these rows. Also `herald stats`' skipped and failed changes (monitoring/changes.py).
SELECT outcome,
       CASE
           WHEN outcome = 'skipped' AND error = 'no matching route' THEN 'no_route'
           WHEN outcome = 'skipped' AND error LIKE '% has no recipients' THEN 'no_recipients'
           WHEN outcome = 'skipped' THEN 'other'
           WHEN error LIKE '%not loaded or sent' THEN 'over_limit'
           ELSE 'malformed'
       END AS reason,
       count(*) AS n
  FROM herald.change_log
 WHERE outcome <> 'routed'
 GROUP BY 1, 2;

-- name: digest_figures
-- The ledger's counters (digests sent and skipped, items per digest, recipients skipped:
-- monitoring/digest_metrics.py), and the most overdue digest's lateness in seconds: a due
-- schedule not claimed yet (digest_schedules_due_idx), or a claimed period not sent yet
-- (digest_runs_unsent_idx). Only read when herald.counters exists.
SELECT 'counter' AS kind, metric, label, value FROM herald.counters
UNION ALL
SELECT 'lateness', NULL, NULL,
       greatest(
           coalesce((SELECT extract(epoch FROM clock_timestamp() - min(next_due_at))
                       FROM herald.digest_schedules
                      WHERE NOT paused AND next_due_at <= clock_timestamp()), 0),
           coalesce((SELECT extract(epoch FROM clock_timestamp() - min(period_end))
                       FROM herald.digest_runs WHERE status IN ('pending', 'sending')), 0)
       )::float8;
