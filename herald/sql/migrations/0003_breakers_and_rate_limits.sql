-- Herald 0.3: circuit breakers and global rate limits, shared by every worker process on
-- every machine (herald/breaker.py, herald/ratelimit.py).

-- One row per external dependency (smtp, ai). `open` is what the exporter exports as
-- herald_circuit_breaker_open{breaker}: true while calls are refused (open, and half_open
-- while its one probe is out). `opened_at` is when the outage began: a failed probe
-- re-opens the breaker without moving it.
CREATE TABLE herald.circuit_breakers (
    breaker               text PRIMARY KEY,
    state                 text        NOT NULL DEFAULT 'closed'
                          CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    opened_at             timestamptz,
    next_probe_at         timestamptz,
    last_error            text,
    updated_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    open                  boolean GENERATED ALWAYS AS (state <> 'closed') STORED
);
INSERT INTO herald.circuit_breakers (breaker) VALUES ('smtp'), ('ai') ON CONFLICT DO NOTHING;

-- One row per rate-limited key: the next free slot (GCRA's "theoretical arrival time").
CREATE TABLE herald.rate_limits (
    key         text PRIMARY KEY,
    next_slot   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Times a job was put off (breaker open, rate limit) without an attempt being spent.
ALTER TABLE herald.jobs ADD COLUMN deferrals integer NOT NULL DEFAULT 0;
