"""Sizes the database pool to the worker's threads when the worker boots.

The worker's thread count is known to Dramatiq (`--threads`), not to Herald's settings:
reading it here, from the worker itself, keeps Herald from parsing the command line.
`HERALD_DB_POOL_SIZE` (settings.db_pool_size) wins when it is set.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from psycopg_pool import ConnectionPool

from herald.db import pool_size_for


class PoolSizing(Middleware):
    """Gives the pool a connection per worker thread, plus a few (`herald.db.pool_size_for`)."""

    def __init__(self, pool: ConnectionPool[Any], *, configured: int | None = None) -> None:
        self.pool = pool
        self.configured = configured

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        size = self.configured or pool_size_for(worker.worker_threads)
        if size != self.pool.max_size:
            self.pool.resize(min_size=min(self.pool.min_size, size), max_size=size)
