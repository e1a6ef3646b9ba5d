"""Connections to PostgreSQL: one pool per process, created on first use.

Every service takes a connection (or the pool) as an argument; this module only
knows how to make them. Rows come back as dicts so services read as the domain.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

#: A row as `dict_row` makes it: column name -> value.
DictRow = dict[str, Any]
#: What `connect` and the pools hand out. Pools are typed `ConnectionPool[Any]`, as callers
#: annotate a bare `ConnectionPool` (to mypy, tuple rows): `connection(pool)`, `transaction`
#: and `autocommit` give a `DictConnection`.
DictConnection = psycopg.Connection[DictRow]

_pools: dict[str, ConnectionPool[DictConnection]] = {}
_lock = threading.Lock()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A single connection, for CLI commands and tests (a `DictConnection`, typed loosely
    so it also passes where a bare `psycopg.Connection` is expected)."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)


def default_pool_size() -> int:
    """`HERALD_DB_POOL_SIZE`, else enough for every worker thread plus a few.

    A job may hold one connection while it checks out another (the email step keeps its
    delivery lock's connection while the SMTP breaker reads its state): a pool no larger
    than the thread count can then deadlock until the pool times out (30 s). With more
    connections than threads, some thread can always finish.
    """
    configured = os.environ.get("HERALD_DB_POOL_SIZE")
    if configured:
        return int(configured)
    threads = 8  # Dramatiq's default
    argv = sys.argv
    for flag in ("--threads", "-t"):
        if flag in argv[:-1]:
            with contextlib.suppress(ValueError):
                threads = int(argv[argv.index(flag) + 1])
    return max(16, threads + 4)


def get_pool(url: str, *, max_size: int | None = None) -> ConnectionPool[Any]:
    """The process-wide pool for `url` (created lazily: workers fork before first use)."""
    max_size = max_size or default_pool_size()
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"row_factory": dict_row},
                open=True,
                name="herald",
                # A restarted PostgreSQL leaves dead connections in the pool; check on
                # checkout so a job never runs on one (one round trip, only for a
                # connection idle long enough to have met a restart).
                check=_check_if_idle,
                reset=_note_returned,
            )
            _pools[url] = pool
        return pool


#: A connection back in the pool for less than this is handed out without a round trip:
#: checking every checkout cost one extra round trip per query group (about a fifth of an
#: email job's database time). Broken sockets are still seen without a round trip.
CHECK_AFTER_IDLE_SECONDS = 1.0


def _note_returned(conn: DictConnection) -> None:
    if conn.autocommit:  # `autocommit()` restores it; never hand out a changed connection
        conn.autocommit = False
    conn._herald_returned_at = time.monotonic()  # type: ignore[attr-defined]


def _check_if_idle(conn: DictConnection) -> None:
    if conn.broken or conn.closed:
        raise psycopg.OperationalError("connection is broken")
    returned = getattr(conn, "_herald_returned_at", None)
    if returned is None or time.monotonic() - returned > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


def connection(pool: ConnectionPool[Any]) -> AbstractContextManager[DictConnection]:
    """`pool.connection()`, typed: every pool here makes dict rows (`get_pool`)."""
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


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
