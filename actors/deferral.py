"""Deferral: putting a job off without it counting as a failure.

When a dependency's circuit is open or its rate limit is reached, the service raises
`Postponed` (herald/ratelimit.py) before calling out. The actor turns it into
`Deferred`, a `dramatiq.errors.Retry` carrying a delay, so that:

(a) Retries re-enqueues the message after that delay (the breaker's next probe, or the
    rate limit's backlog, plus up to 25 % jitter so deferred jobs do not come back as one
    herd); Dramatiq does not log a Retry as an error;
(b) no retry is spent: the `Deferrals` middleware sits *after* Retries in the middleware
    list, so its after-hook runs *before* Retries', and it takes one off
    `message.options["retries"]` that Retries then adds back. Retries' counter therefore
    counts failed attempts only, so `max_retries`, every actor's `retry_when`, the enrich
    actor's "final attempt" and the exponential backoff of a later real failure all see
    the same, honest number. `message.options["herald_deferrals"]` counts deferrals;
(c) the ledger job is left `pending` with `last_error` "deferred: smtp circuit open ...",
    and a deferral is not an attempt: the attempt `job_start` counted is given back and
    `jobs.deferrals` counted instead (the Ledger middleware's own after-hook runs later and
    only touches running jobs). The delay is recorded as the job's `eta` by the Ledger's
    after_enqueue hook, so the sweeper republishes a deferred message that got lost.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from psycopg_pool import ConnectionPool

from actors.ledger_middleware import job_id_of
from herald import ledger
from herald.ratelimit import Postponed

logger = logging.getLogger(__name__)

#: Bounds of a deferral's delay (ms). Delayed messages wait unacked in worker memory, so the
#: ceiling stays far below RabbitMQ's 30-minute consumer_timeout.
MIN_DELAY_MS = 50
MAX_DELAY_MS = 15 * 60 * 1000
#: Up to this fraction of the delay is added at random.
JITTER = 0.25


class Deferred(dramatiq.errors.Retry):
    """The job was put off, not failed: retried after `delay` ms without spending a retry."""

    #: Read by the Prometheus middleware (monitoring/ does not import actors/).
    is_deferral = True

    def __init__(self, reason: str, delay: int) -> None:
        super().__init__(reason, delay=delay)
        self.reason = reason


def deferral_for(postponed: Postponed) -> Deferred:
    delay = postponed.retry_in * 1000 * (1 + random.uniform(0, JITTER))  # noqa: S311 (jitter)
    delay_ms = int(min(max(delay, MIN_DELAY_MS), MAX_DELAY_MS))
    return Deferred(f"deferred: {postponed.reason}; next try in {delay_ms / 1000:.1f}s", delay_ms)


@contextmanager
def deferring() -> Iterator[None]:
    """In an actor: turn the service's `Postponed` into a `Deferred` deferral."""
    try:
        yield
    except Postponed as exc:
        raise deferral_for(exc) from exc


class Deferrals(Middleware):
    """Keeps deferrals from spending retries or attempts. Must come AFTER Retries."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if not isinstance(exception, Deferred):
            return
        # Retries runs next and adds one back: the retry budget is untouched.
        message.options["retries"] = message.options.get("retries", 0) - 1
        message.options["herald_deferrals"] = message.options.get("herald_deferrals", 0) + 1
        logger.info("Job message %s %s", message.message_id, exception.reason)
        job_id = job_id_of(message)
        if job_id is None or not _is_ledger(broker, message):
            return
        with self.pool.connection() as conn:
            ledger.deferred(conn, job_id, exception.reason)


def _is_ledger(broker: dramatiq.Broker, message: Any) -> bool:
    try:
        return bool(broker.get_actor(message.actor_name).options.get("ledger"))
    except dramatiq.errors.ActorNotFound:
        return False
