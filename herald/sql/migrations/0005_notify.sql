-- Herald 0.5: wake the orchestrator when changes commit (LISTEN/NOTIFY).
-- herald.track also installs a statement-level trigger that notifies 'herald_changes'
-- once per statement (PostgreSQL folds identical notifications of one transaction and
-- delivers them at commit); tables tracked before this migration get it too.

CREATE OR REPLACE FUNCTION herald.notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_changes', '');
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION herald.track(target regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION herald.untrack(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS herald_change_log ON %s', target);
    EXECUTE format('DROP TRIGGER IF EXISTS herald_notify ON %s', target);
END;
$$;

-- Tables tracked before this migration get the notify trigger as well.
DO $$
DECLARE
    tracked regclass;
BEGIN
    FOR tracked IN SELECT DISTINCT tgrelid::regclass FROM pg_trigger
                    WHERE tgname = 'herald_change_log' AND NOT tgisinternal LOOP
        PERFORM herald.track(tracked);
    END LOOP;
END;
$$;
