"""Create or migrate the `herald` schema; safe to run again and from two places at once."""

from __future__ import annotations

from typing import Any

import psycopg

from herald import sql

#: Advisory-lock key serialising concurrent `herald db upgrade` runs ("herald" in ASCII).
MIGRATION_LOCK_KEY = 0x686572616C64


def applied(conn: psycopg.Connection[Any]) -> set[str]:
    row = conn.execute("SELECT to_regclass('herald.migrations') AS t").fetchone()
    if not row or list(row.values() if isinstance(row, dict) else row)[0] is None:
        return set()
    return {
        r[0] if not isinstance(r, dict) else r["name"]
        for r in conn.execute("SELECT name FROM herald.migrations")
    }


def pending(conn: psycopg.Connection[Any]) -> list[str]:
    """The migrations `upgrade` would apply (all of them: the herald schema is missing)."""
    done = applied(conn)
    return [name for name, _ in sql.migrations() if name not in done]


def _schema_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regnamespace('herald') IS NOT NULL AS found").fetchone()
    return bool(row and (row["found"] if isinstance(row, dict) else row[0]))


def upgrade(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction; return their names."""
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        # Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
        # database even when the schema exists, and Herald's role owns its schema only.
        if not _schema_exists(conn):
            conn.execute("CREATE SCHEMA herald")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS herald.migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        already = applied(conn)
        for name, body in sql.migrations():
            if name in already:
                continue
            conn.execute(body)
            conn.execute("INSERT INTO herald.migrations (name) VALUES (%s)", (name,))
            done.append(name)
    return done
