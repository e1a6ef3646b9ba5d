"""The enrich actor: summarise a notification with the AI, then hand off to email."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors import runtime
from actors.deferral import Deferred, deferring
from actors.options import options_for
from actors.publish import publish
from herald import ledger
from herald.enrich.step import HeldForAI
from herald.enrich.step import enrich as enrich_service
from monitoring.prometheus import record_tokens

_options = options_for("enrich")
_max_retries = _options["max_retries"]


def _retry_when(retries: int, exception: BaseException) -> bool:
    # A route that holds its emails while the AI is down keeps retrying (with capped
    # backoff) until the AI is back; anything else gives up after max_retries. A deferral
    # (ai circuit open, rate limit) is always tried again and spends no retry: `retries`
    # counts failed attempts only (actors/deferral.py), here and in final_attempt below.
    return isinstance(exception, HeldForAI | Deferred) or retries < _max_retries


@dramatiq.actor(queue_name="enrich", ledger=True, retry_when=_retry_when, **_options)
def enrich(job_id: int) -> None:
    rt = runtime.runtime()
    message = CurrentMessage.get_current_message()
    retries = message.options.get("retries", 0) if message else 0
    with deferring():
        outcome = enrich_service(
            rt.pool, rt.settings, rt.summariser, job_id, final_attempt=retries >= _max_retries
        )
    if outcome.summary is not None:
        record_tokens(outcome.summary.prompt_tokens, outcome.summary.completion_tokens)
    with rt.pool.connection() as conn:
        ledger.publish_and_mark(conn, outcome.email_jobs, publish)
