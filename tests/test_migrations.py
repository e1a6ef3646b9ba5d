"""`herald db upgrade` builds the schema, is safe to run again, and matches schema.sql."""

from __future__ import annotations

import re

import psycopg

from herald import sql
from herald.db import connect
from herald.migrate import upgrade

CATALOG = """
SELECT 'column' AS kind, table_name || '.' || column_name || ' ' || data_type || ' '
       || is_nullable || ' ' || coalesce(column_default, '') AS what
  FROM information_schema.columns WHERE table_schema = 'herald'
UNION ALL
SELECT 'index', indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'herald'
UNION ALL
SELECT 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'herald'::regnamespace
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || md5(p.prosrc)
  FROM pg_proc p WHERE p.pronamespace = 'herald'::regnamespace
ORDER BY 1, 2
"""


def catalog(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(CATALOG)]


def test_upgrade_applies_every_migration_once(database_url):
    with connect(database_url) as conn:
        first = upgrade(conn)
        second = upgrade(conn)
    assert first == [name for name, _ in sql.migrations()]
    assert second == []


def test_the_migrations_produce_the_reference_schema(database_url, postgres_server):
    with connect(database_url) as conn:
        upgrade(conn)
    reference = postgres_server.create_database()
    with psycopg.connect(reference, autocommit=True) as conn:
        conn.execute(sql.schema())
    assert catalog(database_url) == catalog(reference)


def positional(text: str) -> str:
    """psycopg's %(name)s placeholders as PostgreSQL's $n, one number per name."""
    numbers: dict[str, int] = {}
    return re.sub(r"%\((\w+)\)s", lambda m: f"${numbers.setdefault(m[1], len(numbers) + 1)}", text)


def test_every_query_is_valid_sql_against_the_schema(database_url):
    """PREPARE parses and plans each named query without running it."""
    with connect(database_url) as conn:
        upgrade(conn)
        for name, text in sql.queries.items():
            conn.execute(f"PREPARE q_{name} AS {positional(text)}")
