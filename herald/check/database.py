"""`herald check`'s database: it answers, its herald schema is up to date, and (through
`herald.check.routes`) the routes fit its tracked tables. Details name the host, port and
database, never the user or the password.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from herald.check.results import TIMEOUT, CheckResult, fail, first_line, ok, skip
from herald.check.routes import check_routes
from herald.config import Settings


def database_address(url: str) -> str:
    """`host:port/dbname`, never the user or the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparseable URL)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        url,
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=max(2, int(TIMEOUT)),
        application_name="herald-check",
    )


def check_database(conn: psycopg.Connection[Any], address: str) -> CheckResult:
    """The database answers and has every migration applied."""
    from herald import sql
    from herald.migrate import pending

    todo = pending(conn)
    total = len(sql.migrations())
    if len(todo) == total:
        return fail("database", f"{address}: the herald schema is missing: run `herald db upgrade`")
    if todo:
        return fail(
            "database",
            f"{address}: {len(todo)} migration(s) not applied ({', '.join(todo)}): "
            "run `herald db upgrade`",
        )
    return ok("database", f"{address}: reachable, schema up to date ({total} migrations)")


def database_checks(settings: Settings) -> list[CheckResult]:
    """The database, then (when it answers) the routes against its tables."""
    address = database_address(settings.database_url)
    try:
        conn = connect(settings.database_url)
    except psycopg.ProgrammingError:  # its message quotes the URL, password and all
        return [fail("database", "HERALD_DATABASE_URL is not a valid PostgreSQL URL")]
    except psycopg.Error as exc:
        detail = first_line(exc).rpartition(" failed: ")[2] or first_line(exc)
        return [
            fail("database", f"{address}: cannot connect: {detail}"),
            skip("routes", "database unreachable"),
        ]
    from herald.tracking import application_tables, tracked_tables

    with conn:
        result = check_database(conn, address)
        tracked, tables = tracked_tables(conn), application_tables(conn)
    return [result, *check_routes(settings, tracked, tables)]
