-- Herald 0.6: a change's nesting depth, measured in PostgreSQL before the orchestrator
-- loads it. PostgreSQL accepts jsonb nested thousands of levels deep; psycopg's JSON
-- decoder recurses once per level and raises RecursionError on such a row, so a change
-- too deep (or too large) is refused in SQL and never fetched (lock_changes).

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
