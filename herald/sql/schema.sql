-- The herald schema as the migrations leave it, written out whole for reading.
-- Reference only: `herald db upgrade` applies migrations/, never this file;
-- tests/test_migrations.py checks that both produce the same catalog.

CREATE SCHEMA herald;

CREATE TABLE herald.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());

CREATE TABLE herald.change_log (
    id          bigserial PRIMARY KEY,
    table_name  text        NOT NULL,
    operation   text        NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    row_pk      jsonb,
    old_row     jsonb,
    new_row     jsonb,
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_at  timestamptz,
    outcome     text CHECK (outcome IN ('routed', 'skipped', 'failed')),
    error       text
);
-- The orchestrator only ever looks at unclaimed rows: keep that index small.
CREATE INDEX change_log_unclaimed_idx ON herald.change_log (id) WHERE claimed_at IS NULL;
-- Skipped and failed changes, counted by reason at every scrape (herald_changes_not_routed).
CREATE INDEX change_log_not_routed_idx ON herald.change_log (outcome) WHERE outcome <> 'routed';

-- Records one row change. TG_ARGV holds the table's primary-key columns.
CREATE FUNCTION herald.record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    source jsonb;
    pk     jsonb := '{}'::jsonb;
    col    text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        source := to_jsonb(OLD);
    ELSE
        source := to_jsonb(NEW);
    END IF;
    FOREACH col IN ARRAY TG_ARGV LOOP
        pk := pk || jsonb_build_object(col, source -> col);
    END LOOP;
    INSERT INTO herald.change_log (table_name, operation, row_pk, old_row, new_row)
    VALUES (
        format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME),
        TG_OP,
        pk,
        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END
    );
    RETURN NULL;
END;
$$;

-- Attaches the change-log trigger (one row per change) and the notify trigger (one
-- NOTIFY per statement, which wakes the orchestrator) to an application table.
CREATE FUNCTION herald.notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_changes', '');
    RETURN NULL;
END;
$$;

CREATE FUNCTION herald.track(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pk_cols text[];
    args    text;
BEGIN
    SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
      INTO pk_cols
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = target AND i.indisprimary;
    IF pk_cols IS NULL THEN
        RAISE EXCEPTION 'herald.track: table % has no primary key', target
            USING HINT = 'Herald names each change by its primary key; add one to the table.',
                  ERRCODE = 'invalid_table_definition';
    END IF;
    SELECT string_agg(quote_literal(c), ', ') INTO args FROM unnest(pk_cols) AS c;
    EXECUTE format('DROP TRIGGER IF EXISTS herald_change_log ON %s', target);
    EXECUTE format(
        'CREATE TRIGGER herald_change_log AFTER INSERT OR UPDATE OR DELETE ON %s '
        'FOR EACH ROW EXECUTE FUNCTION herald.record_change(%s)', target, args);
    EXECUTE format('DROP TRIGGER IF EXISTS herald_notify ON %s', target);
    EXECUTE format(
        'CREATE TRIGGER herald_notify AFTER INSERT OR UPDATE OR DELETE ON %s '
        'FOR EACH STATEMENT EXECUTE FUNCTION herald.notify_changes()', target);
END;
$$;

CREATE FUNCTION herald.untrack(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS herald_change_log ON %s', target);
    EXECUTE format('DROP TRIGGER IF EXISTS herald_notify ON %s', target);
END;
$$;

-- A change's nesting depth, measured before the orchestrator loads it (lock_changes).
-- Whether `doc` nests arrays and objects at least `depth` levels deep: a container sits at
-- level depth - 1 (the document itself is level 0). jsonpath's `.**{n}` descends no
-- further than level n and stops at the first match.
CREATE FUNCTION herald.jsonb_nested_at_least(doc jsonb, depth int) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT depth <= 0 OR jsonb_path_exists(
        doc,
        format('strict $.**{%s} ? (@.type() == "array" || @.type() == "object")', depth - 1)
            ::jsonpath)
$$;

-- How deep `doc` nests arrays and objects (a scalar 0; [] and {"a": 1} 1; [[1]] 2),
-- counting no further than max_depth + 1: a document nested deeper is not walked whole.
-- lock_changes only asks jsonb_nested_at_least; this one tells an operator how deep a
-- refused change is (SELECT herald.jsonb_depth(new_row, 500) ... WHERE id = 42).
-- One probe at max_depth + 1, then a doubling and a binary search below it: two probes for
-- a flat row, about 2 log2(max_depth) at worst.
CREATE FUNCTION herald.jsonb_depth(doc jsonb, max_depth int) RETURNS int
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    low  int := 1;              -- doc is nested at least `low` levels deep ...
    high int := max_depth + 1;  -- ... and fewer than `high`
    step int := 1;
    mid  int;
BEGIN
    IF jsonb_typeof(doc) NOT IN ('object', 'array') THEN
        RETURN 0;
    END IF;
    IF herald.jsonb_nested_at_least(doc, high) THEN
        RETURN high;
    END IF;
    WHILE low + step < high AND herald.jsonb_nested_at_least(doc, low + step) LOOP
        low := low + step;
        step := step * 2;
    END LOOP;
    high := least(high, low + step);
    WHILE low + 1 < high LOOP
        mid := (low + high) / 2;
        IF herald.jsonb_nested_at_least(doc, mid) THEN
            low := mid;
        ELSE
            high := mid;
        END IF;
    END LOOP;
    RETURN low;
END;
$$;

-- One run of the orchestrator's drain loop: proves batches never overlap, feeds the
-- "orchestrator last succeeded" metric.
CREATE TABLE herald.orchestrator_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    batches      integer NOT NULL DEFAULT 0,
    claimed      integer NOT NULL DEFAULT 0,
    routed       integer NOT NULL DEFAULT 0,
    skipped      integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    published    integer NOT NULL DEFAULT 0,
    republished  integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'locked')),
    error        text
);

CREATE TABLE herald.notifications (
    id             bigserial PRIMARY KEY,
    route          text        NOT NULL,
    table_name     text        NOT NULL,
    row_pk         jsonb,
    change_ids     bigint[]    NOT NULL,
    recipients     text[]      NOT NULL,
    ai             boolean     NOT NULL DEFAULT false,
    on_ai_failure  text        NOT NULL DEFAULT 'send',
    priority       text        NOT NULL DEFAULT 'normal',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Debounce: changes to one row inside a route's window fold into one notification.
    debounce_key     text,
    first_change_at  timestamptz,
    due_at           timestamptz
);
CREATE INDEX notifications_debounce_idx ON herald.notifications (debounce_key, id)
    WHERE debounce_key IS NOT NULL;
-- Retention: a change-log row is purged only when no remaining notification lists it.
CREATE INDEX notifications_change_ids_idx ON herald.notifications USING gin (change_ids);
-- The HTTP API's filters on route and table (0007).
CREATE INDEX notifications_route_idx ON herald.notifications (route, id);
CREATE INDEX notifications_table_idx ON herald.notifications (table_name, id);

-- The job ledger, and the outbox: a job row is written in the same transaction as the
-- step that decides it, and published after commit (published_at records when).
CREATE TABLE herald.jobs (
    id               bigserial PRIMARY KEY,
    message_id       uuid        NOT NULL UNIQUE,
    actor            text        NOT NULL,
    queue            text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'complete', 'failed',
                                       'canceled', 'superseded')),
    attempts         integer     NOT NULL DEFAULT 0,
    notification_id  bigint      REFERENCES herald.notifications (id) ON DELETE CASCADE,
    change_id        bigint,
    recipient        text,
    unique_key       text,
    priority         smallint    NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at     timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    eta              timestamptz,
    last_error       text,
    -- Times the job was put off (breaker open, rate limit) without spending an attempt.
    deferrals        integer     NOT NULL DEFAULT 0
);
-- Counts by status, and the oldest pending job per actor (0010: no open-jobs index).
CREATE INDEX jobs_status_idx ON herald.jobs (status, actor);
CREATE INDEX jobs_notification_idx ON herald.jobs (notification_id);
-- Debounced jobs whose due time has come and that were never published.
CREATE INDEX jobs_due_idx ON herald.jobs (eta) WHERE status = 'pending' AND published_at IS NULL;
-- Unique jobs: no two open jobs share an actor and unique key.
CREATE UNIQUE INDEX jobs_unique_open_idx ON herald.jobs (actor, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
-- The HTTP API's job list (0007): recipient = X, and created_after / created_before /
-- sort=created_at, each newest first from an index.
CREATE INDEX jobs_recipient_idx ON herald.jobs (recipient, id) WHERE recipient IS NOT NULL;
CREATE INDEX jobs_created_idx ON herald.jobs (created_at, id);

CREATE TABLE herald.summaries (
    notification_id    bigint PRIMARY KEY REFERENCES herald.notifications (id) ON DELETE CASCADE,
    status             text        NOT NULL CHECK (status IN ('ok', 'offline', 'unavailable')),
    summary            text,
    model              text,
    aliases            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prompt_tokens      integer     NOT NULL DEFAULT 0,
    completion_tokens  integer     NOT NULL DEFAULT 0,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One delivery per notification and recipient: claimed ('sending') before SMTP, 'sent'
-- after. A row found 'sending' by a later attempt is the one ambiguous case.
CREATE TABLE herald.deliveries (
    id                 bigserial PRIMARY KEY,
    notification_id    bigint      NOT NULL REFERENCES herald.notifications (id) ON DELETE CASCADE,
    recipient          text        NOT NULL,
    message_id_header  text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    attempts           integer     NOT NULL DEFAULT 0,
    ambiguous          boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at            timestamptz,
    error              text,
    UNIQUE (notification_id, recipient)
);

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

-- One row per person Herald writes to: the address (its bare form, lower case), how to
-- address them, and the IANA timezone their digests follow.
CREATE TABLE herald.recipients (
    address       text PRIMARY KEY CHECK (address = lower(address) AND length(address) <= 320),
    display_name  text CHECK (length(display_name) <= 200),
    timezone      text CHECK (length(timezone) <= 64),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A muted recipient gets nothing from the route ('*': from any route), until `until`
-- (NULL: until unmuted). `source` says who muted: an operator or the unsubscribe link.
CREATE TABLE herald.recipient_mutes (
    address     text NOT NULL REFERENCES herald.recipients (address) ON DELETE CASCADE,
    route       text NOT NULL CHECK (length(route) <= 200),
    until       timestamptz,
    source      text NOT NULL DEFAULT 'operator' CHECK (source IN ('operator', 'unsubscribe')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (address, route)
);

-- A recipient a change did not go to, and why: the row held no address in a
-- recipient_fields column, or not a valid one, or the recipient is muted.
CREATE TABLE herald.recipient_skips (
    id          bigserial PRIMARY KEY,
    change_id   bigint      NOT NULL,
    route       text        NOT NULL,
    recipient   text,
    field       text,
    reason      text        NOT NULL CHECK (reason IN ('no_address', 'invalid_address', 'muted')),
    detail      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX recipient_skips_change_idx ON herald.recipient_skips (change_id);
CREATE INDEX recipient_skips_created_idx ON herald.recipient_skips (created_at);

-- One digest calendar per route and recipient. `schedule` and `timezone` are the ones in
-- effect: the recipient's own (own_schedule, own_timezone) or else the route's, in the
-- recipient's timezone or else the route's digest_timezone. A digest holds what came after
-- `cursor_at` (the end of the previous period); `next_due_at` is when the next one is due.
CREATE TABLE herald.digest_schedules (
    id            bigserial PRIMARY KEY,
    route         text        NOT NULL,
    recipient     text        NOT NULL,
    schedule      text        NOT NULL,
    timezone      text        NOT NULL,
    own_schedule  text,
    own_timezone  text,
    operations    text[],
    tables        text[],
    paused        boolean     NOT NULL DEFAULT false,
    cursor_at     timestamptz NOT NULL,
    next_due_at   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (route, recipient)
);
CREATE INDEX digest_schedules_due_idx ON herald.digest_schedules (next_due_at) WHERE NOT paused;

-- One digest period of one schedule, claimed in the transaction that advances the
-- schedule: never two for a period (the unique key), and the email's Message-ID is derived
-- from that key. `job_id` is its send_digest job (none when it was empty or muted).
CREATE TABLE herald.digest_runs (
    id                 bigserial PRIMARY KEY,
    schedule_id        bigint      NOT NULL REFERENCES herald.digest_schedules (id) ON DELETE CASCADE,
    route              text        NOT NULL,
    recipient          text        NOT NULL,
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    status             text        NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'empty', 'muted')),
    items              integer     NOT NULL DEFAULT 0,
    job_id             bigint,
    message_id_header  text,
    attempts           integer     NOT NULL DEFAULT 0,
    ambiguous          boolean     NOT NULL DEFAULT false,
    overview_status    text CHECK (overview_status IN ('ok', 'offline', 'unavailable')),
    overview           text,
    overview_aliases   jsonb,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at            timestamptz,
    UNIQUE (schedule_id, period_end)
);
CREATE INDEX digest_runs_job_idx ON herald.digest_runs (job_id);
CREATE INDEX digest_runs_unsent_idx ON herald.digest_runs (period_end)
    WHERE status IN ('pending', 'sending');

-- A notification of a digest route, for one recipient, waiting for its digest (run_id
-- NULL) or collected by one. `included`: it passed the schedule's filters.
CREATE TABLE herald.digest_items (
    id               bigserial PRIMARY KEY,
    notification_id  bigint      NOT NULL REFERENCES herald.notifications (id) ON DELETE CASCADE,
    route            text        NOT NULL,
    recipient        text        NOT NULL,
    to_address       text        NOT NULL,
    table_name       text        NOT NULL,
    operation        text        NOT NULL,
    changed_at       timestamptz NOT NULL,
    run_id           bigint REFERENCES herald.digest_runs (id) ON DELETE CASCADE,
    included         boolean,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX digest_items_open_idx ON herald.digest_items (route, recipient, changed_at)
    WHERE run_id IS NULL;
CREATE INDEX digest_items_run_idx ON herald.digest_items (run_id, changed_at)
    WHERE run_id IS NOT NULL;

-- Counters kept by the ledger itself, in the transaction that does what they count
-- (digests sent and skipped, items per digest, recipients skipped): exact across every
-- process and restart. `herald metrics serve` exports them.
CREATE TABLE herald.counters (
    metric  text             NOT NULL,
    label   text             NOT NULL DEFAULT '',
    value   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, label)
);
