"""Connections to PostgreSQL: one pool per process, created on first use.

Every service takes a connection (or the pool) as an argument; this module only
knows how to make them. Rows come back as dicts so services read as the domain.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A single connection, for CLI commands and tests."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)  # type: ignore[arg-type]


def get_pool(url: str, *, max_size: int = 16) -> ConnectionPool:
    """The process-wide pool for `url` (created lazily: workers fork before first use)."""
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
                # checkout so a job never runs on one.
                check=ConnectionPool.check_connection,
            )
            _pools[url] = pool
        return pool


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A pooled connection inside one transaction (commit on success, rollback on error)."""
    with pool.connection() as conn, conn.transaction():
        yield conn


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
