-- Circuit breakers, rate limits and deferrals (herald/breaker.py,
-- herald/ratelimit.py, actors/deferral.py), loaded by name with queries.sql.

-- name: breaker_state
SELECT breaker, state, consecutive_failures, opened_at, next_probe_at, last_error, updated_at,
       greatest(extract(epoch FROM next_probe_at - clock_timestamp()), 0)::float8
           AS probe_in_seconds,
       greatest(extract(epoch FROM clock_timestamp() - opened_at), 0)::float8 AS open_seconds
  FROM herald.circuit_breakers
 WHERE breaker = %(breaker)s;

-- name: breakers_all
-- Every breaker, for `herald stats`.
SELECT breaker, state, consecutive_failures, opened_at, next_probe_at, last_error, updated_at
  FROM herald.circuit_breakers
 ORDER BY breaker;

-- name: breaker_ensure
INSERT INTO herald.circuit_breakers (breaker) VALUES (%(breaker)s) ON CONFLICT DO NOTHING;

-- name: breaker_claim_probe
-- One probe per reset period across every process: the first claimer moves next_probe_at
-- a period ahead; a concurrent claimer waits for its row lock, re-checks the condition on
-- the new row version, finds it false and gets no row.
UPDATE herald.circuit_breakers
   SET state = 'half_open',
       next_probe_at = clock_timestamp() + make_interval(secs => %(reset_seconds)s),
       updated_at = clock_timestamp()
 WHERE breaker = %(breaker)s AND state <> 'closed' AND next_probe_at <= clock_timestamp()
RETURNING breaker;

-- name: breaker_failure
-- A transient failure of a call admitted while closed. The Nth in a row opens the breaker;
-- failures of calls still in flight when it opened only add to the count.
UPDATE herald.circuit_breakers AS b
   SET consecutive_failures = b.consecutive_failures + 1,
       last_error = %(error)s,
       updated_at = clock_timestamp(),
       state = CASE WHEN b.state = 'closed' AND b.consecutive_failures + 1 >= %(threshold)s
                    THEN 'open' ELSE b.state END,
       opened_at = CASE WHEN b.state = 'closed' AND b.consecutive_failures + 1 >= %(threshold)s
                        THEN clock_timestamp() ELSE b.opened_at END,
       next_probe_at = CASE WHEN b.state = 'closed'
                             AND b.consecutive_failures + 1 >= %(threshold)s
                            THEN clock_timestamp() + make_interval(secs => %(reset_seconds)s)
                            ELSE b.next_probe_at END
 WHERE b.breaker = %(breaker)s
RETURNING b.state, b.consecutive_failures;

-- name: breaker_probe_failed
-- The probe failed: open again for another period. opened_at keeps the outage's start.
UPDATE herald.circuit_breakers
   SET state = 'open',
       consecutive_failures = consecutive_failures + 1,
       last_error = %(error)s,
       opened_at = coalesce(opened_at, clock_timestamp()),
       next_probe_at = clock_timestamp() + make_interval(secs => %(reset_seconds)s),
       updated_at = clock_timestamp()
 WHERE breaker = %(breaker)s AND state <> 'closed'
RETURNING state, consecutive_failures;

-- name: breaker_probe_succeeded
UPDATE herald.circuit_breakers
   SET state = 'closed', consecutive_failures = 0, opened_at = NULL, next_probe_at = NULL,
       updated_at = clock_timestamp()
 WHERE breaker = %(breaker)s AND state <> 'closed'
RETURNING state;

-- name: breaker_call_succeeded
-- A success while closed ends a run of failures (written only when there is one).
UPDATE herald.circuit_breakers
   SET consecutive_failures = 0, updated_at = clock_timestamp()
 WHERE breaker = %(breaker)s AND state = 'closed' AND consecutive_failures > 0;

-- name: breaker_release_probe
-- The probe ended without telling us anything (a permanent error for one message, or it
-- never called out): let the next caller probe at once instead of a period later.
UPDATE herald.circuit_breakers
   SET next_probe_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE breaker = %(breaker)s AND state = 'half_open';

-- name: rate_limit_take
-- GCRA with no burst: slots are 1/rate apart, so no window of 1/rate x N seconds (aligned
-- or sliding) ever holds more than N calls. Takes the next slot if it is less than
-- %(max_wait)s seconds away and returns how long to wait for it; no row: not taken.
-- One atomic statement (ON CONFLICT DO UPDATE locks the row; concurrent takers queue).
INSERT INTO herald.rate_limits AS r (key, next_slot, updated_at)
VALUES (%(key)s, statement_timestamp() + make_interval(secs => %(interval)s),
        statement_timestamp())
ON CONFLICT (key) DO UPDATE
   SET next_slot = greatest(r.next_slot, statement_timestamp())
                   + make_interval(secs => %(interval)s),
       updated_at = statement_timestamp()
 WHERE r.next_slot < statement_timestamp() + make_interval(secs => %(max_wait)s)
RETURNING greatest(extract(epoch FROM r.next_slot - statement_timestamp())::float8
                   - %(interval)s, 0)::float8 AS wait_seconds;

-- name: rate_limit_backlog
-- Seconds until the next free slot of a key (when rate_limit_take returned no row).
SELECT greatest(extract(epoch FROM next_slot - clock_timestamp()), 0)::float8 AS seconds
  FROM herald.rate_limits
 WHERE key = %(key)s;

-- name: job_deferred
-- A deferral is not an attempt: give back the attempt job_start counted, count the
-- deferral and leave the job pending with the reason. (The ledger middleware's own update
-- runs later and only touches running jobs, so it leaves this one alone.)
UPDATE herald.jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0), deferrals = deferrals + 1,
       last_error = %(reason)s
 WHERE id = %(id)s  -- running, found by its id (queries.sql, job_complete):
   AND status NOT IN ('pending', 'complete', 'failed', 'canceled', 'superseded');
