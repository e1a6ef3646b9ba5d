"""Global rate limits in PostgreSQL: `[limits] emails_per_second`, `ai_requests_per_minute`.

Why not Dramatiq's rate limiters: they need Redis or Memcached, and a PostgreSQL
`RateLimiterBackend` (add/incr/decr/incr_and_sum/wait/wait_notify) would cost several
statements per call and still could not say *when* the next slot is free, which is what
deciding "wait a moment in-process" or "defer the message" needs. A window counter
(`key, window_start, count`) would say it, but lets 2 x N calls through across a window
boundary and leaves a row per window behind.

So: GCRA (the "generic cell rate algorithm") with one row per key holding the next free
slot. Slots are `1 / rate` apart and taken with one atomic UPSERT ... RETURNING; a caller
whose slot is less than `max_wait` (1 s) away sleeps until it, otherwise it takes nothing
and gets `Throttled` with the backlog's length, and the job is deferred like for an open
circuit (no retry spent). No burst: in any window of N / rate seconds, aligned or sliding,
at most N calls start. The database's clock is the only clock, so machines may disagree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from herald import db
from herald.config import Settings
from herald.errors import HeraldError
from herald.sql import queries

logger = logging.getLogger(__name__)

#: Longest a caller sleeps in-process for its slot; a longer wait becomes a deferral.
MAX_WAIT_SECONDS = 1.0


class Postponed(HeraldError):
    """Not a failure: the call was not made and should be tried again in `retry_in` seconds.

    The actors turn it into a deferral (actors/deferral.py); it is deliberately not a
    `TransientError`, so nothing mistakes it for a failed attempt.
    """

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_in = max(retry_in, 0.0)


class Throttled(Postponed):
    """The rate limit's next free slot is further away than we are willing to sleep."""

    def __init__(self, key: str, retry_in: float) -> None:
        super().__init__(f"{key} rate limit reached", retry_in)
        self.key = key


class RateLimiter:
    """At most `rate` calls per `per` seconds for `key`, across every process."""

    def __init__(
        self,
        key: str,
        rate: float,
        per: float = 1.0,
        *,
        max_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("a rate limit needs a positive rate and period")
        self.key = key
        self.interval = per / rate
        self.max_wait = MAX_WAIT_SECONDS if max_wait is None else max_wait
        self.sleep = sleep

    def acquire(self, pool: ConnectionPool) -> float:
        """Take a slot, sleeping until it when it is near; returns the seconds slept.

        Raises `Throttled` (having taken nothing) when the next slot is `max_wait` or
        more away.
        """
        wait = self.reserve(pool)
        if wait > 0:
            self.sleep(wait)
        return wait

    def reserve(self, pool: ConnectionPool) -> float:
        """Take a slot without waiting for it: the seconds until it starts (an asyncio
        caller sleeps them on its event loop). Raises `Throttled` as `acquire` does."""
        params = {"key": self.key, "interval": self.interval, "max_wait": self.max_wait}
        with db.connection(pool) as conn:
            row = conn.execute(queries["rate_limit_take"], params).fetchone()
            if row is None:
                backlog = conn.execute(queries["rate_limit_backlog"], params).fetchone()
        if row is None:
            raise Throttled(self.key, backlog["seconds"] if backlog else self.interval)
        return float(row["wait_seconds"])


def limiter_for(settings: Settings, dependency: str) -> RateLimiter | None:
    """The configured limit for "smtp" (emails_per_second) or "ai" (ai_requests_per_minute)."""
    limits = settings.limits
    if dependency == "smtp" and limits.emails_per_second:
        return RateLimiter("smtp", limits.emails_per_second, 1.0)
    if dependency == "ai" and limits.ai_requests_per_minute:
        return RateLimiter("ai", limits.ai_requests_per_minute, 60.0)
    return None
