"""The enrich actor: summarise a notification with the AI, then hand off to email."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors.deferral import Deferred, deferring
from actors.ledger_middleware import start
from actors.options import options_for
from actors.publish import Publisher
from herald import db, ledger
from herald.enrich.step import HeldForAI
from herald.enrich.step import enrich as enrich_notification
from herald.services import Services
from monitoring.prometheus import record_tokens


def declare(broker: dramatiq.Broker, services: Services, publish: Publisher) -> dramatiq.Actor:
    """Declare `enrich` on `broker`."""
    options = options_for(services.settings, "enrich")
    max_retries = options["max_retries"]
    pool, settings, summariser = services.pool, services.settings, services.summariser

    def retry_when(retries: int, exception: BaseException) -> bool:
        # A route that holds its emails while the AI is down keeps retrying (with capped
        # backoff) until the AI is back; anything else gives up after max_retries. A
        # deferral (ai circuit open, rate limit) is always tried again and spends no retry:
        # `retries` counts failed attempts only (actors/deferral.py), here and below.
        return isinstance(exception, HeldForAI | Deferred) or retries < max_retries

    @dramatiq.actor(broker=broker, ledger=True, retry_when=retry_when, **options)
    def enrich(job_id: int) -> None:
        ctx = start(pool, job_id)
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message else 0
        with deferring():
            outcome = enrich_notification(
                ctx, pool, settings, summariser, final_attempt=retries >= max_retries
            )
        if outcome.summary is not None:
            record_tokens(outcome.summary.prompt_tokens, outcome.summary.completion_tokens)
        with db.connection(pool) as conn:
            ledger.publish_and_mark(conn, outcome.email_jobs, publish)

    return enrich
