-- What is tracked, for `herald check` and the orchestrator's coverage warning
-- (herald/tracking.py). Read-only; names are written as the trigger writes
-- herald.change_log.table_name: format('%I.%I', schema, table).

-- name: tracked_tables
-- Tables carrying the change-log trigger that herald.track attaches.
SELECT format('%I.%I', n.nspname, c.relname) AS table_name
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = 'herald_change_log' AND NOT t.tgisinternal
 ORDER BY 1;

-- name: application_tables
-- Every ordinary or partitioned table outside PostgreSQL's own schemas and Herald's.
SELECT format('%I.%I', n.nspname, c.relname) AS table_name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'herald')
   AND n.nspname NOT LIKE 'pg\_%'
 ORDER BY 1;
