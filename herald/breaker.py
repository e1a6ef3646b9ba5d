"""Circuit breakers on the SMTP server and the AI, shared by every worker in PostgreSQL.

One row per dependency in `herald.circuit_breakers` (SQL in `sql/breakers.sql`):

- **closed**: calls go through. `failure_threshold` *transient* failures in a row (SMTP
  4xx, timeouts, refused connections; AI 5xx, 429, timeouts: whatever the adapters raise as
  `TransientError`) open it. A success resets the count.
- **open**: no call is made; the caller gets `CircuitOpen` and the job is *deferred*
  (actors/deferral.py: put off with a delay, no retry spent, the ledger job stays pending).
- **half_open**: once `next_probe_at` passes, exactly one caller claims the probe with an
  atomic `UPDATE ... WHERE next_probe_at <= now() RETURNING` that also moves
  `next_probe_at` a period ahead (so a probe whose worker died is replaced a period later).
  The probe's success closes the breaker, its transient failure opens it again.

Permanent errors (an SMTP 5xx for one recipient, bad data) are *neutral*: they neither
count as failures nor reset the count. They say something about one message, not about
the service's health, and treating a 5xx as a success would let a run of refused
recipients hide a failing server. A probe that ends neutral gives the probe back at once.

State is read with one primary-key lookup per call, or not at all when the caller read it
moments before (the ledger middleware reads every breaker's state in the statement that
starts a job: `known_state`); writes happen only on failures, on a success that ends a run
of failures (the email step folds that into its delivery's commit), and around probes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from herald import db
from herald.config import Settings
from herald.errors import TransientError
from herald.ratelimit import Postponed, RateLimiter, Throttled, limiter_for
from herald.sql import queries

logger = logging.getLogger(__name__)

#: The breakers Herald keeps (monitoring.metrics.BREAKERS names the same two).
BREAKERS = ("smtp", "ai")

__all__ = [
    "BREAKERS",
    "Call",
    "CircuitBreaker",
    "CircuitOpen",
    "Postponed",
    "Throttled",
    "guarded",
    "guarded_async",
]


class CircuitOpen(Postponed):
    """The dependency's breaker is open (or its one probe is out)."""

    def __init__(self, breaker: str, retry_in: float, open_for: float, last_error: str | None):
        super().__init__(f"{breaker} circuit open", retry_in)
        self.breaker = breaker
        self.open_for = open_for
        self.last_error = last_error


class CircuitBreaker:
    """One shared breaker; every method takes the pool and uses a short connection of its own
    (so a caller's transaction never decides whether a probe claim is committed)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        known_state: str | None = None,
    ):
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        #: The state read for this call by the caller ("closed": admit without a round trip;
        #: anything else, or None, reads it again and may claim the probe).
        self.known_state = known_state

    def admit(self, pool: ConnectionPool) -> bool:
        """Let a call through (returns True when it is the probe) or raise CircuitOpen."""
        if self.known_state == "closed":
            return False
        with db.connection(pool) as conn:
            row = conn.execute(queries["breaker_state"], {"breaker": self.name}).fetchone()
            if row is None or row["state"] == "closed":
                return False
            claimed = conn.execute(
                queries["breaker_claim_probe"],
                {"breaker": self.name, "reset_seconds": self.reset_seconds},
            ).fetchone()
        if claimed:
            logger.info("Circuit %s: probing (one call let through)", self.name)
            return True
        retry_in = row["probe_in_seconds"] or self.reset_seconds  # 0: another took the probe
        raise CircuitOpen(self.name, retry_in, row["open_seconds"], row["last_error"])

    def succeeded(self, pool: ConnectionPool, *, probe: bool) -> None:
        with db.connection(pool) as conn:
            if probe:
                if conn.execute(
                    queries["breaker_probe_succeeded"], {"breaker": self.name}
                ).fetchone():
                    logger.warning("Circuit %s closed: the probe succeeded", self.name)
            else:
                conn.execute(queries["breaker_call_succeeded"], {"breaker": self.name})

    def failed(self, pool: ConnectionPool, error: str, *, probe: bool) -> None:
        params = {
            "breaker": self.name,
            "error": error[:500],
            "threshold": self.failure_threshold,
            "reset_seconds": self.reset_seconds,
        }
        with db.connection(pool) as conn:
            if probe:
                conn.execute(queries["breaker_probe_failed"], params)
                logger.warning("Circuit %s stays open: the probe failed: %s", self.name, error)
                return
            conn.execute(queries["breaker_ensure"], params)
            row = conn.execute(queries["breaker_failure"], params).fetchone()
        if row and row["state"] == "open" and row["consecutive_failures"] == self.failure_threshold:
            logger.warning(
                "Circuit %s opened after %d failures in a row: %s",
                self.name,
                row["consecutive_failures"],
                error,
            )

    def release_probe(self, pool: ConnectionPool) -> None:
        with db.connection(pool) as conn:
            conn.execute(queries["breaker_release_probe"], {"breaker": self.name})


def breaker_for(
    settings: Settings, name: str, *, known_state: str | None = None
) -> CircuitBreaker | None:
    b = settings.breakers
    if b.failure_threshold <= 0:
        return None
    return CircuitBreaker(
        name,
        failure_threshold=b.failure_threshold,
        reset_seconds=b.reset_seconds,
        known_state=known_state,
    )


def breaker_states(conn: psycopg.Connection[Any]) -> list[dict]:
    """Every breaker's row (state, consecutive_failures, opened_at, ...) for operators;
    empty on a schema from before breakers existed."""
    exists = conn.execute("SELECT to_regclass('herald.circuit_breakers') IS NOT NULL AS t")
    row = exists.fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    if not (row["t"] if isinstance(row, dict) else row[0]):
        return []
    return [dict(r) for r in conn.execute(queries["breakers_all"]).fetchall()]


# -- one guarded call -------------------------------------------------------------------------


@dataclass
class Call:
    """What happened to one admitted call; see `guarded`."""

    probe: bool = False
    outcome: str | None = None  # None: never made | success | failure | neutral
    error: str = field(default="", repr=False)
    #: The breaker this call was admitted by (None: no breaker configured).
    breaker: str | None = None
    #: Set by a caller that recorded a success in its own transaction (the email step's
    #: `delivery_sent_job_complete`): `guarded` then writes nothing for it.
    success_recorded: bool = False

    @contextmanager
    def made(self) -> Iterator[None]:
        """Wrap exactly the call to the dependency: its outcome is what the breaker learns."""
        try:
            yield
        except TransientError as exc:
            self.outcome, self.error = "failure", str(exc)
            raise
        except BaseException:
            self.outcome = "neutral"
            raise
        self.outcome = "success"


@contextmanager
def guarded(
    pool: ConnectionPool, settings: Settings, dependency: str, *, known_state: str | None = None
) -> Iterator[Call]:
    """Admit one call to `dependency` ("smtp" or "ai"), then record how it went.

    Admission takes a rate-limit slot (waiting for it when it is under a second away) and
    asks the breaker; either may raise `Postponed` before anything is done. Wrap the call
    itself in `with call.made():`. The outcome is recorded after the caller's own work
    (so a sent email is marked sent first), on connections of its own; a failure to record
    it is logged, never raised over the caller's result. `known_state`: the breaker's state
    as the caller just read it ("closed" admits without a round trip).
    """
    limiter: RateLimiter | None = limiter_for(settings, dependency)
    if limiter is not None:
        limiter.acquire(pool)
    breaker = breaker_for(settings, dependency, known_state=known_state)
    call = Call(probe=breaker.admit(pool) if breaker else False,
                breaker=breaker.name if breaker else None)  # fmt: skip
    try:
        yield call
    finally:
        if breaker is not None:
            _record(pool, breaker, call)


@asynccontextmanager
async def guarded_async(
    pool: ConnectionPool, settings: Settings, dependency: str, *, known_state: str | None = None
) -> AsyncIterator[Call]:
    """`guarded` for a call made on an asyncio event loop: the same rate limit, breaker and
    record, their statements run on the loop's worker threads and the rate limit's wait
    slept on the loop, so that many calls wait together (herald/enrich/batch.py)."""
    limiter: RateLimiter | None = limiter_for(settings, dependency)
    if limiter is not None:
        wait = await asyncio.to_thread(limiter.reserve, pool)
        if wait > 0:
            await asyncio.sleep(wait)
    breaker = breaker_for(settings, dependency, known_state=known_state)
    probe = False
    if breaker is not None and known_state != "closed":  # closed: admitted, no round trip
        probe = await asyncio.to_thread(breaker.admit, pool)
    call = Call(probe=probe, breaker=breaker.name if breaker else None)
    try:
        yield call
    finally:
        if breaker is not None and _writes(call):
            await asyncio.to_thread(_record, pool, breaker, call)


def _writes(call: Call) -> bool:
    """Whether `_record` has anything to write for `call` (most successes: nothing)."""
    if call.probe or call.outcome == "failure":
        return True
    return call.outcome == "success" and not call.success_recorded


def _record(pool: ConnectionPool, breaker: CircuitBreaker, call: Call) -> None:
    try:
        if call.outcome == "success":
            if call.success_recorded and not call.probe:
                return
            breaker.succeeded(pool, probe=call.probe)
        elif call.outcome == "failure":
            breaker.failed(pool, call.error, probe=call.probe)
        elif call.probe:
            breaker.release_probe(pool)
    except (psycopg.Error, OSError) as exc:  # the pool's own errors are psycopg errors too
        logger.warning("Circuit %s: could not record a call's outcome: %s", breaker.name, exc)
