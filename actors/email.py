"""The email actors: render and send notifications, each to one recipient, once.

`send_email` sends one job's email. `send_emails` carries a batch of email jobs in one
message (herald/email/batch.py says why and how each job stays its own); a job that
fails in a batch is retried here as a `send_email` message of its own.
"""

from __future__ import annotations

import dramatiq

from actors.batches import first_retry_backoff_ms, settle
from actors.deferral import deferring
from actors.ledger_middleware import complete, start
from actors.options import options_for
from actors.publish import Publisher, send_alone
from herald.email.batch import BUDGET_SHARE, send_batch
from herald.email.deliver import send_notification_email
from herald.services import Services
from monitoring.prometheus import record_batch, record_delivery


def declare(
    broker: dramatiq.Broker, services: Services, publish: Publisher
) -> tuple[dramatiq.Actor, dramatiq.Actor]:
    """Declare `send_email` and `send_emails` on `broker`."""
    options = options_for(services.settings, "send_email")
    pool, settings, mailer = services.pool, services.settings, services.mailer

    @dramatiq.actor(broker=broker, ledger=True, **options)
    def send_email(job_id: int) -> None:
        ctx = start(pool, job_id)
        with deferring():  # smtp circuit open or rate limit reached: put off, no retry spent
            outcome = send_notification_email(ctx, pool, settings, mailer)
        if not outcome.completed:
            complete(pool, job_id)
        record_delivery(outcome)

    @dramatiq.actor(
        broker=broker, batch_of="send_email", **{**options, "actor_name": "send_emails"}
    )
    def send_emails(job_ids: list[int]) -> None:
        # The Ledger middleware rejected a malformed message before it got here.
        budget = send_email.options["time_limit"] / 1000 * BUDGET_SHARE
        report = send_batch(
            pool, settings, mailer, job_ids,
            budget_seconds=budget, may_retry=send_email.options.get("max_retries", 0) >= 1,
        )  # fmt: skip
        for sent in report.sent:
            record_delivery(sent.outcome)
        record_batch(report)
        for retry in report.retry:  # failed transiently: retried alone, as Retries would
            send_alone(broker, retry.ref, first_retry_backoff_ms(send_email), retries=1)
        settle(broker, pool, publish, report)

    return send_email, send_emails
