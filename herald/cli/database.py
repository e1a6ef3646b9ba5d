"""How the `herald` commands reach PostgreSQL, and the one line they print when they cannot.

A command connects with a short `connect_timeout` and checks the herald schema before it
does anything, so a database that is down, or not migrated yet, is one line naming what
to fix within seconds (not a pool's ten warnings and a `PoolTimeout` after 30 s, nor an
`UndefinedTable`). The line names the variable, the host and the port, never the URL
(it may hold a password).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from herald.config import Settings, load_settings
from herald.environment import DATABASE_URL

#: Seconds to wait for PostgreSQL to answer; libpq's minimum is 2.
CONNECT_TIMEOUT = 3
#: What each command says before `herald db upgrade` has run.
SCHEMA_MISSING = "the herald schema is missing: run `herald db upgrade`"


class ServiceProblem(Exception):
    """The database (or the broker) cannot serve this command; `str()` is the line shown
    to the user."""


def database_settings() -> Settings:
    """Settings for a command that only reads and writes the database (no broker)."""
    return load_settings(require=(DATABASE_URL,))


def where(url: str) -> str:
    """`host:port` of a PostgreSQL URL, without its user or password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unparseable address"
    host = str(params.get("host") or params.get("hostaddr") or "localhost (socket)")
    return f"{host}:{params.get('port') or 5432}"


def reason(exc: psycopg.Error) -> str:
    """libpq's own reason, on one line: `Connection refused`, `timeout expired`, ..."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first.rpartition(" failed: ")[2].strip() or first


def unreachable(url: str, exc: psycopg.Error) -> ServiceProblem:
    return ServiceProblem(
        f"cannot reach the database at {where(url)} ({DATABASE_URL}): {reason(exc)}"
    )


def open_database(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection for one command, within `CONNECT_TIMEOUT` seconds or a ServiceProblem."""
    url = settings.database_url
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # its message quotes the URL, password and all
        raise ServiceProblem(f"{DATABASE_URL} is not a valid PostgreSQL URL") from None
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="herald-cli",
        )
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from None


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Refuse a database without the herald schema, or with migrations not applied yet."""
    from herald.migrate import pending

    missing = pending(conn)
    if not missing:
        return
    from herald import sql

    if len(missing) == len(sql.migrations()):
        raise ServiceProblem(SCHEMA_MISSING)
    raise ServiceProblem(
        f"the herald schema is out of date ({len(missing)} migration(s) not applied: "
        f"{', '.join(missing)}): run `herald db upgrade`"
    )


def open_herald(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to a database with the herald schema up to date, or a ServiceProblem."""
    conn = open_database(settings, autocommit=autocommit)
    try:
        check_schema(conn)
        if not autocommit:
            conn.rollback()  # the check's reads: the command starts its own transaction
    except BaseException:
        conn.close()
        raise
    return conn


def schema_error(exc: psycopg.Error) -> bool:
    """An error that means the herald schema (or part of it) is not there."""
    return isinstance(
        exc,
        psycopg.errors.UndefinedTable
        | psycopg.errors.InvalidSchemaName
        | psycopg.errors.UndefinedFunction,
    ) and "herald" in str(exc)


def require_broker(settings: Settings) -> None:
    """Refuse to orchestrate when no node of HERALD_BROKER_URL answers: the run would
    claim changes and leave their jobs to the outbox, with pika's tracebacks on stderr."""
    from herald.check.services import check_rabbitmq

    result = check_rabbitmq(settings)
    if result.status == "fail":
        detail = result.detail.removeprefix("cannot connect: ")
        raise ServiceProblem(f"cannot reach the broker (HERALD_BROKER_URL): {detail}")
