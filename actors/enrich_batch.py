"""The `enrich_batch` actor: a batch of enrich jobs in one message, their AI calls made
together on the process's event loop (herald/enrich/batch.py says why and how each job
stays its own). A job that fails in a batch is retried here as an `enrich` message of its
own, as `send_emails` does with `send_email`.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from actors.batches import first_retry_backoff_ms, settle
from actors.enrich import retry_delay_ms
from actors.options import options_for
from actors.publish import Publisher, send_alone
from herald import db, ledger
from herald.enrich.ai_async import async_summariser_for
from herald.enrich.batch import BUDGET_SHARE, summarise_batch
from herald.enrich.loop import AILoop
from herald.ledger import QUEUES
from herald.services import Services
from monitoring.prometheus import record_batch, record_tokens

#: Kept clear of the enrich job's time limit once the calls are started: the hand-off and
#: the publishing that follow.
MARGIN_SECONDS = 5.0


class AILoopShutdown(Middleware):
    """Closes the process's AI event loop when the worker shuts down."""

    def __init__(self, ai: AILoop) -> None:
        self.ai = ai

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.ai.close()


def declare(
    broker: dramatiq.Broker, services: Services, publish: Publisher, enrich: dramatiq.Actor
) -> dramatiq.Actor:
    """Declare `enrich_batch` on `broker`; `enrich` runs the jobs retried alone."""
    options = options_for(services.settings, "enrich")
    pool, settings = services.pool, services.settings
    ai = AILoop(lambda: async_summariser_for(services.summariser), settings.ai.max_concurrency)
    broker.add_middleware(AILoopShutdown(ai))

    @dramatiq.actor(broker=broker, batch_of="enrich", **{**options, "actor_name": "enrich_batch"})
    def enrich_batch(job_ids: list[int]) -> None:
        # The Ledger middleware rejected a malformed message before it got here.
        limit = enrich.options["time_limit"] / 1000
        budget = min(limit * BUDGET_SHARE, limit - settings.ai.call_seconds - MARGIN_SECONDS)
        report = summarise_batch(
            pool, settings, ai, job_ids,
            budget_seconds=max(budget, 0.0), may_retry=enrich.options.get("max_retries", 0) >= 1,
        )  # fmt: skip
        summaries = report.summaries  # counters: the batch's sums, counted once
        record_tokens(sum(s.prompt_tokens for s in summaries),
                      sum(s.completion_tokens for s in summaries))  # fmt: skip
        record_batch(report, "enrich", QUEUES["enrich"])
        with db.connection(pool) as conn:
            ledger.publish_and_mark(conn, report.email_jobs, publish)  # as email batches
        for retry in report.retry:  # alone, as the enrich actor delays its own retry
            delay = retry_delay_ms(retry.deadline, first_retry_backoff_ms(enrich))
            send_alone(broker, retry.ref, delay, retries=1)
        settle(broker, pool, publish, report)

    return enrich_batch
