-- The recipient directory, its mutes, recipient skips and the ledger's counters
-- (herald/recipients.py, orchestrator/recipients.py), loaded by name.

-- name: recipients_list
-- Recipients by address (one address, or a page after %(after)s), with the mutes in force
-- at %(now)s; %(muted)s: only those with one.
SELECT r.address, r.display_name, r.timezone, r.created_at, r.updated_at,
       coalesce(jsonb_agg(jsonb_build_object('route', m.route, 'until', m.until,
                                             'source', m.source, 'since', m.created_at)
                          ORDER BY m.route) FILTER (WHERE m.route IS NOT NULL),
                '[]'::jsonb) AS mutes
  FROM herald.recipients r
  LEFT JOIN herald.recipient_mutes m
         ON m.address = r.address AND (m.until IS NULL OR m.until > %(now)s)
 WHERE (%(address)s::text IS NULL OR r.address = %(address)s::text)
   AND (%(after)s::text IS NULL OR r.address > %(after)s::text)
 GROUP BY r.address
HAVING NOT %(muted)s::boolean OR count(m.route) > 0
 ORDER BY r.address
 LIMIT %(limit)s;

-- name: recipient_upsert
-- Create a directory entry or change the fields flagged %(set_name)s / %(set_timezone)s.
INSERT INTO herald.recipients AS r (address, display_name, timezone)
VALUES (%(address)s, %(display_name)s, %(timezone)s)
ON CONFLICT (address) DO UPDATE
   SET display_name = CASE WHEN %(set_name)s::boolean THEN EXCLUDED.display_name
                           ELSE r.display_name END,
       timezone = CASE WHEN %(set_timezone)s::boolean THEN EXCLUDED.timezone
                       ELSE r.timezone END,
       updated_at = clock_timestamp()
RETURNING address, display_name, timezone, created_at, updated_at;

-- name: recipient_delete
DELETE FROM herald.recipients WHERE address = %(address)s RETURNING address;

-- name: recipient_mute
-- Mute an address for a route ('*': all), creating its directory entry when missing (the
-- mute's foreign key is checked at the end of the statement, when the entry exists).
WITH entry AS (
    INSERT INTO herald.recipients (address) VALUES (%(address)s) ON CONFLICT DO NOTHING
)
INSERT INTO herald.recipient_mutes AS m (address, route, until, source)
VALUES (%(address)s, %(route)s, %(until)s, %(source)s)
ON CONFLICT (address, route) DO UPDATE
   SET until = EXCLUDED.until, source = EXCLUDED.source, created_at = clock_timestamp()
RETURNING address, route, until, source, created_at AS since;

-- name: recipient_unmute
DELETE FROM herald.recipient_mutes
 WHERE address = %(address)s AND (%(route)s::text IS NULL OR route = %(route)s::text)
RETURNING route;

-- name: active_mutes
SELECT address, route
  FROM herald.recipient_mutes
 WHERE address = ANY (%(addresses)s::text[]) AND (until IS NULL OR until > %(now)s);

-- name: change_recipient_fields
-- The columns a route's recipient_fields names, of the changed rows: the new row's, the
-- old row's for a DELETE. Only those columns are read; a value comes back as text only
-- when it is a JSON string, cut at 321 characters (one more than an address may hold, so
-- a longer one is told apart). `found`: the row has the column at all.
SELECT f.change_id, f.field, v.value IS NOT NULL AS found, jsonb_typeof(v.value) AS type,
       CASE WHEN jsonb_typeof(v.value) = 'string' THEN left(v.value #>> '{}', 321) END AS value
  FROM jsonb_to_recordset(%(fields)s::jsonb) AS f(change_id bigint, field text)
  JOIN herald.change_log c ON c.id = f.change_id
 CROSS JOIN LATERAL (
       SELECT CASE WHEN c.operation = 'DELETE' THEN c.old_row ELSE c.new_row END -> f.field
              AS value
 ) v;

-- name: insert_recipient_skips
INSERT INTO herald.recipient_skips (change_id, route, recipient, field, reason, detail)
SELECT s.change_id, s.route, s.recipient, s.field, s.reason, s.detail
  FROM jsonb_to_recordset(%(skips)s::jsonb)
       AS s(change_id bigint, route text, recipient text, field text, reason text, detail text);

-- name: add_counters
-- Add to the ledger's counters, in the caller's transaction.
INSERT INTO herald.counters AS c (metric, label, value)
SELECT u.metric, u.label, sum(u.value)
  FROM jsonb_to_recordset(%(counts)s::jsonb) AS u(metric text, label text, value float8)
 GROUP BY u.metric, u.label
ON CONFLICT (metric, label) DO UPDATE SET value = c.value + EXCLUDED.value;
