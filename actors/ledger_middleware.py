"""Keeps the job ledger true for every actor declared with `ledger=True`.

An attempt's life, in the order it happens:
- before: a malformed message (anything but one job id) is rejected and dead-lettered;
- the actor starts its job itself (`start`): the job is marked running and what its step
  needs is read in one statement, and handed to the step as its `JobContext`. A canceled,
  superseded or finished job's message is skipped: it does nothing when it arrives;
- success: the step completed the job in its own statement, or the actor completes it;
- failure: this middleware marks the job pending again (Retries will try later) or failed
  with its reason. It must sit *before* Retries in the middleware list: after-hooks run in
  reverse order, so by the time ours runs, Retries has decided whether the message failed.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.ledger import describe

logger = logging.getLogger(__name__)


def job_id_of(message: dramatiq.Message) -> int | None:
    """The ledger id a Herald message carries, or None when the message is malformed."""
    if len(message.args) == 1 and not message.kwargs and type(message.args[0]) is int:
        return message.args[0]
    return None


def job_ids_of(message: dramatiq.Message) -> list[int] | None:
    """The ledger ids a batch message carries, or None when the message is malformed."""
    if len(message.args) != 1 or message.kwargs:
        return None
    ids = message.args[0]
    if isinstance(ids, list) and ids and all(type(i) is int for i in ids):
        return ids
    return None


def start(pool: ConnectionPool, job_id: int) -> ledger.JobContext:
    """Start a ledger job in its actor: its context, or SkipMessage when it must not run."""
    with db.autocommit(pool) as conn:
        ctx, status = ledger.start_job(conn, job_id)
    if ctx is None:
        logger.info("Skipping job %d: it is %s", job_id, status or "unknown to the ledger")
        raise SkipMessage(f"job {job_id} is {status}")
    return ctx


def complete(pool: ConnectionPool, job_id: int) -> None:
    """Complete a job whose step did not complete it in its own statement."""
    with db.autocommit(pool) as conn:
        ledger.complete(conn, job_id)


class Ledger(Middleware):
    """Rejects malformed ledger messages; marks failed attempts pending (retrying) or failed."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @property
    def actor_options(self) -> set[str]:
        # batch_of: the actor runs a batch of another actor's ledger jobs in one message
        # and keeps their rows itself (actors/email.py); this middleware leaves it alone.
        return {"ledger", "batch_of"}

    @staticmethod
    def _has(broker: dramatiq.Broker, message: dramatiq.Message, option: str) -> bool:
        try:
            return bool(broker.get_actor(message.actor_name).options.get(option))
        except dramatiq.errors.ActorNotFound:
            return False

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._has(broker, message, "batch_of"):
            if job_ids_of(message) is None:
                self._reject(message, "expected one non-empty list of job ids")
        elif self._has(broker, message, "ledger") and job_id_of(message) is None:
            self._reject(message, "expected one job id")

    @staticmethod
    def _reject(message: Any, expected: str) -> NoReturn:
        logger.error(
            "Rejecting malformed %s message %s: %s",
            message.actor_name,
            message.message_id,
            expected,
        )
        message.fail()
        raise SkipMessage("malformed message")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        # A success was completed by the actor; only a failure is ours to record. A job
        # that never started (the ledger unreachable) is not running: nothing changes.
        if exception is None or not self._has(broker, message, "ledger"):
            return
        job_id = job_id_of(message)
        if job_id is None:
            return
        with db.autocommit(self.pool) as conn:
            if message.failed:
                ledger.fail(conn, job_id, describe(exception))
            else:
                ledger.will_retry(conn, job_id, describe(exception))

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # Only retries are enqueued with a delay: record when the next attempt is due.
        if delay and self._has(broker, message, "ledger"):
            job_id = job_id_of(message)
            if job_id is not None:
                with self.pool.connection() as conn:
                    ledger.delayed(conn, job_id, delay / 1000)
