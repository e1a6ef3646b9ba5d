"""Attaching Herald's change-log trigger to application tables, and listing what is tracked."""

from __future__ import annotations

from typing import Any

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


def tracked_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Tables with the change-log trigger, named as their changes are (`schema.table`)."""
    return [_name(row) for row in conn.execute(queries["tracked_tables"])]


def application_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table outside PostgreSQL's schemas and Herald's own, as `schema.table`."""
    return [_name(row) for row in conn.execute(queries["application_tables"])]


def _name(row: Any) -> str:
    return str(row["table_name"] if isinstance(row, dict) else row[0])
