"""Keeps the job ledger true for every actor declared with `ledger=True`.

Before an attempt the job is marked running (a canceled, superseded or finished
job's message is skipped: it does nothing when it arrives). After it, the job
is complete, pending again (Retries will try later) or failed with its reason.
It must sit *before* Retries in the middleware list: after-hooks run in reverse
order, so by the time ours runs, Retries has decided whether the message failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import dramatiq
from dramatiq.middleware import Middleware, MiddlewareError, SkipMessage
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


class LedgerUnavailable(MiddlewareError):
    """The ledger could not be reached before an attempt: the attempt fails and is retried."""


class Ledger(Middleware):
    """Marks ledger jobs running, complete, pending (retrying) or failed."""

    def __init__(self, pool: Callable[[], ConnectionPool]) -> None:
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

    def _is_ledger(self, broker: dramatiq.Broker, message: dramatiq.Message) -> bool:
        return self._has(broker, message, "ledger")

    def _is_batch(self, broker: dramatiq.Broker, message: dramatiq.Message) -> bool:
        return self._has(broker, message, "batch_of")

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._is_batch(broker, message):
            # The batch actor starts and ends its jobs itself; its message must be well formed.
            if job_ids_of(message) is None:
                self._reject(message, "expected one non-empty list of job ids")
            return
        if not self._is_ledger(broker, message):
            return
        job_id = job_id_of(message)
        if job_id is None:
            self._reject(message, "expected one job id")
        try:
            # One statement, one round trip: mark it running and read what the step needs.
            with db.autocommit(self.pool()) as conn:
                run, status = ledger.start_attempt(conn, job_id)
        except Exception as exc:
            # Dramatiq logs and swallows anything a before-hook raises except a MiddlewareError,
            # then runs the actor: it would find the job not running, do nothing, and the
            # message would be acked with the job still open (lost). Fail the attempt instead.
            raise LedgerUnavailable(f"job {job_id}: could not mark it running: {exc}") from exc
        if not run:
            logger.info("Skipping job %d: it is %s", job_id, status or "unknown to the ledger")
            raise SkipMessage(f"job {job_id} is {status}")
        attempt = ledger.take_loaded(job_id)
        if attempt is not None:
            ledger.begin(attempt)  # the step reads it instead of loading the job again

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
        if not self._is_ledger(broker, message):
            return
        job_id = job_id_of(message)
        if job_id is None:
            return
        attempt = ledger.end(job_id)
        if exception is None and attempt is not None and attempt.completed:
            return  # the step completed the job in its own transaction (e.g. with the delivery)
        with db.autocommit(self.pool()) as conn:
            if exception is None:
                ledger.complete(conn, job_id)
            elif message.failed:
                ledger.fail(conn, job_id, describe(exception))
            else:
                ledger.will_retry(conn, job_id, describe(exception))

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        job_id = job_id_of(message)
        if job_id is not None:
            ledger.end(job_id)

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # Only retries are enqueued with a delay: record when the next attempt is due.
        if delay and self._is_ledger(broker, message):
            job_id = job_id_of(message)
            if job_id is not None:
                with self.pool().connection() as conn:
                    ledger.delayed(conn, job_id, delay / 1000)
