-- Recipients and digests (issue 11): the recipient directory and its mutes, why a
-- recipient was skipped, digest schedules, their runs and the items they collect, and the
-- ledger's own counters (exported by `herald metrics serve`).

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
