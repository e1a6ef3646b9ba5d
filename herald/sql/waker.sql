-- The LISTEN/NOTIFY waker's queries (orchestrator/waker.py).

-- name: waker_runs_started
-- How many orchestrator runs ever started: a run's first act is to insert its row, so
-- while this has not moved since a wake-up was sent, that wake-up is still pending.
-- The sequence, not the table: retention may delete old runs.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS started
  FROM herald.orchestrator_runs_id_seq;

-- name: waker_unclaimed
-- Is any change waiting? The partial index on unclaimed rows keeps this a tiny lookup.
SELECT EXISTS (SELECT 1 FROM herald.change_log WHERE claimed_at IS NULL) AS waiting;
