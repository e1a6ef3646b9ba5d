"""Connections to PostgreSQL: how pools and single connections are made.

Every service takes a connection (or the pool) as an argument; this module only knows
how to make them, and the composition root (`herald.bootstrap`) decides when. Rows come
back as dicts so services read as the domain.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from herald.redact import scrub, url_secrets

#: A row as `dict_row` makes it: column name -> value.
DictRow = dict[str, Any]
#: What `connect` and the pools hand out. Pools are typed `ConnectionPool[Any]`, as callers
#: annotate a bare `ConnectionPool` (to mypy, tuple rows): `connection(pool)`, `transaction`
#: and `autocommit` give a `DictConnection`.
DictConnection = psycopg.Connection[DictRow]


class ConnectError(psycopg.OperationalError):
    """PostgreSQL could not be reached or the URL was refused; the message is libpq's with
    every credential of the URL masked (libpq quotes a malformed URL back, password and
    all). Still a `psycopg.OperationalError`, for callers that catch those."""


def connect_error(error: psycopg.Error, url: str) -> ConnectError:
    """`error`, raised while connecting to `url`, as a `ConnectError` safe to show."""
    detail = " ".join(str(error).split()) or type(error).__name__
    return ConnectError(f"cannot connect to PostgreSQL: {scrub(detail, url_secrets(url))}")


class _Connection(psycopg.Connection[Any]):
    """A connection whose connect-time errors never quote the URL's credentials (the pool
    logs them: psycopg_pool's "error connecting in 'herald': ...")."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise connect_error(exc, conninfo) from None


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """A single connection, for CLI commands and tests (a `DictConnection`, typed loosely
    so it also passes where a bare `psycopg.Connection` is expected). `kwargs` are libpq's
    (connect_timeout, application_name, ...). A failure to connect is a `ConnectError`."""
    return _Connection.connect(url, autocommit=autocommit, row_factory=dict_row, **kwargs)


#: Connections a pool opens at most before the worker says how many threads it runs.
DEFAULT_POOL_SIZE = 16


def pool_size_for(threads: int) -> int:
    """Enough connections for every worker thread plus a few.

    A job may hold one connection while it checks out another (the email step keeps its
    delivery lock's connection while the SMTP breaker reads its state): a pool no larger
    than the thread count can then deadlock until the pool times out (30 s). With more
    connections than threads, some thread can always finish.
    """
    return max(DEFAULT_POOL_SIZE, threads + 4)


def make_pool(url: str, *, max_size: int | None = None) -> ConnectionPool[Any]:
    """A pool of dict-row connections; the composition root makes one per process."""
    return _Pool(
        url,
        min_size=1,
        max_size=max_size or DEFAULT_POOL_SIZE,
        kwargs={"row_factory": dict_row},
        connection_class=_Connection,
        open=True,
        name="herald",
        # A restarted PostgreSQL leaves dead connections in the pool; check on checkout so
        # a job never runs on one (one round trip, only for a connection idle long enough
        # to have met a restart).
        check=_check_if_idle,
    )


#: A connection back in the pool for less than this is handed out without a round trip:
#: checking every checkout cost one extra round trip per query group (about a fifth of an
#: email job's database time). Broken sockets are still seen without a round trip.
CHECK_AFTER_IDLE_SECONDS = 1.0


class _Pool(ConnectionPool[Any]):
    """A pool that notes when each connection came back, on the returning thread.

    Not `reset=`: with a reset callback psycopg_pool hands every returned connection to
    one of its worker threads (a queue put and a thread wake-up per checkout, about 5% of
    a busy worker's CPU in the benchmarks' profile). Noting the time needs no round trip.
    """

    def putconn(self, conn: Any) -> None:
        conn._herald_returned_at = time.monotonic()
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.autocommit = False  # `autocommit()` restores it; never hand out a changed one
        super().putconn(conn)


def _check_if_idle(conn: DictConnection) -> None:
    if conn.broken or conn.closed:
        raise psycopg.OperationalError("connection is broken")
    if conn.autocommit:  # returned mid-transaction: the pool rolled it back, then here
        conn.autocommit = False
    returned = getattr(conn, "_herald_returned_at", None)
    if returned is None or time.monotonic() - returned > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


def connection(pool: ConnectionPool[Any]) -> AbstractContextManager[DictConnection]:
    """`pool.connection()`, typed: every pool here makes dict rows (`make_pool`)."""
    return pool.connection()


@contextmanager
def transaction(pool: ConnectionPool[Any]) -> Iterator[DictConnection]:
    """A pooled connection inside one transaction (commit on success, rollback on error)."""
    with pool.connection() as conn, conn.transaction():
        yield conn


@contextmanager
def autocommit(pool: ConnectionPool[Any]) -> Iterator[DictConnection]:
    """A pooled connection in autocommit mode, back to the pool in the default mode.

    Each statement is then its own transaction in one round trip (no BEGIN and COMMIT
    around it): for the hot path's single statements, whose CTEs make them atomic.
    `conn.transaction()` still groups several statements.
    """
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.autocommit = False
