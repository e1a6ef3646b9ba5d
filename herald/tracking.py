"""Attaching Herald's change-log trigger to application tables."""

from __future__ import annotations

import psycopg

from herald.errors import PermanentError
from herald.sql import queries


def track(conn: psycopg.Connection, table: str) -> None:
    """Same as `SELECT herald.track('table')`; a clear error for a missing table or primary key."""
    try:
        with conn.transaction():
            conn.execute(queries["track_table"], {"table": table})
    except psycopg.errors.UndefinedTable:
        raise PermanentError(f"table {table!r} does not exist") from None
    except psycopg.errors.InvalidTableDefinition as exc:
        raise PermanentError(str(exc.diag.message_primary)) from None
    except psycopg.errors.InvalidSchemaName:
        raise PermanentError(
            "the herald schema is missing: run `herald db upgrade` first"
        ) from None
