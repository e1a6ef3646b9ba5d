"""What a batch actor does with the jobs its batch did not finish: the same for email and
enrich batches (`herald.batches.BatchOutcome`).

A deferred job runs alone after its delay; a job handed back is published again, alone or
as a batch; a job that failed transiently is retried alone after a first retry's backoff
(the actor works out that delay: the enrich actor caps it by the email's deadline).
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.common import compute_backoff
from psycopg_pool import ConnectionPool

from actors.deferral import deferral_for
from actors.publish import Publisher, send_alone
from herald import db, ledger
from herald.batches import BatchOutcome


def first_retry_backoff_ms(actor: dramatiq.Actor) -> int:
    """A first retry's backoff as Retries computes it, from the actor's current options."""
    _, backoff = compute_backoff(
        1, factor=actor.options["min_backoff"], max_backoff=actor.options["max_backoff"]
    )
    return int(backoff)


def settle(
    broker: dramatiq.Broker, pool: ConnectionPool[Any], publish: Publisher, report: BatchOutcome
) -> None:
    """Send each deferred job alone after its delay, and publish the handed-back jobs again
    (alone after a failure, as a batch after a spent time budget). A message that cannot
    be sent is left to the sweeper: the job is pending in the ledger."""
    for deferral in report.deferred:
        delay = deferral_for(deferral.postponed).delay or 0
        send_alone(broker, deferral.ref, delay, herald_deferrals=1)
    if report.handed_back:
        with db.connection(pool) as conn:
            ledger.publish_and_mark(
                conn, report.handed_back,
                lambda refs: publish(refs, batch=not report.hand_back_alone),
            )  # fmt: skip
