"""The enrich actor: summarise a notification with the AI, then hand off to email."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage

from actors.deferral import Deferred, deferring
from actors.ledger_middleware import start
from actors.options import options_for
from actors.publish import Publisher
from herald import db, ledger
from herald.enrich.deadline import SummaryDeadline
from herald.enrich.step import HeldForAI
from herald.enrich.step import enrich as enrich_notification
from herald.errors import PermanentError
from herald.ledger import describe
from herald.services import Services
from monitoring.prometheus import record_tokens

logger = logging.getLogger(__name__)

#: The soonest a retry before the deadline comes back (a failure that repeats at once must
#: not spin).
MIN_RETRY_DELAY_MS = 100


class RetryBeforeDeadline(dramatiq.errors.Retry):
    """A send route's attempt failed; the next comes soon enough for its email's deadline
    (`[ai] max_delay_seconds`), sooner than the backoff would have it. A retry spent, not a
    deferral."""


def retry_delay_ms(deadline: SummaryDeadline | None, backoff_ms: int) -> int:
    """When a failed attempt is tried again: after its backoff, but in time for its email's
    deadline (a hold route has none)."""
    if deadline is None:
        return backoff_ms
    return max(deadline.retry_in_ms(backoff_ms), MIN_RETRY_DELAY_MS)


def declare(broker: dramatiq.Broker, services: Services, publish: Publisher) -> dramatiq.Actor:
    """Declare `enrich` on `broker`."""
    options = options_for(services.settings, "enrich")
    max_retries = options["max_retries"]
    pool, settings, summariser = services.pool, services.settings, services.summariser

    def retry_when(retries: int, exception: BaseException) -> bool:
        # A route that holds its emails while the AI is down keeps retrying (with capped
        # backoff) until the AI is back; anything else gives up after max_retries. A
        # deferral (rate limit, or a hold route's open circuit) is always tried again and
        # spends no retry: `retries` counts failed attempts only (actors/deferral.py).
        return isinstance(exception, HeldForAI | Deferred) or retries < max_retries

    @dramatiq.actor(broker=broker, ledger=True, retry_when=retry_when, **options)
    def enrich(job_id: int) -> None:
        ctx = start(pool, job_id)
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message else 0
        final = retries >= max_retries
        deadline = SummaryDeadline.of(ctx.notification, settings)  # None: a hold route
        try:
            with deferring():
                outcome = enrich_notification(
                    ctx, pool, settings, summariser, final_attempt=final, deadline=deadline
                )
        except (Deferred, HeldForAI, PermanentError):
            raise
        except Exception as exc:  # the AI failed (or anything else did): again, in time
            if deadline is None or final:
                raise
            backoff = compute_backoff(
                retries,
                factor=enrich_actor.options["min_backoff"],
                max_backoff=enrich_actor.options["max_backoff"],
            )[1]
            delay = retry_delay_ms(deadline, backoff)
            reason = (
                f"{describe(exc)}; next try in {delay / 1000:.1f}s (the email goes without "
                f"a summary in at most {max(deadline.left(), 0):.0f}s)"
            )
            logger.warning("Enrich job %d: %s", job_id, reason)
            raise RetryBeforeDeadline(reason, delay=delay) from exc
        if outcome.summary is not None:
            record_tokens(outcome.summary.prompt_tokens, outcome.summary.completion_tokens)
        with db.connection(pool) as conn:
            ledger.publish_and_mark(conn, outcome.email_jobs, publish)

    enrich_actor = enrich
    return enrich
