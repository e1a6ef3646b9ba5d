"""The digest actors: `digest_tick` every minute (UTC) claims due digest schedules and
writes their jobs (herald/digests/collect.py); `send_digest` sends one digest
(herald/digests/deliver.py).

The tick is a plain every-minute periodiq cron: which digests are due is computed by
Herald with zoneinfo, never by cron in local time (croniter and periodiq both fire twice
in a fall-back hour).
"""

from __future__ import annotations

import logging

import dramatiq
from periodiq import cron

from actors.deferral import deferring
from actors.ledger_middleware import start
from actors.options import options_for
from actors.publish import Publisher
from herald.digests.collect import run_tick
from herald.digests.deliver import send_digest as send_one_digest
from herald.services import Services
from monitoring.prometheus import record_tokens

logger = logging.getLogger(__name__)


def declare(
    broker: dramatiq.Broker, services: Services, publish: Publisher
) -> tuple[dramatiq.Actor, dramatiq.Actor]:
    """Declare `digest_tick` (every minute) and `send_digest` on `broker`."""
    pool, settings = services.pool, services.settings

    @dramatiq.actor(
        broker=broker, periodic=cron("* * * * *"), **options_for(settings, "digest_tick")
    )
    def digest_tick() -> None:
        report = run_tick(pool, settings, publish)
        if report.claimed or report.created or report.recomputed or report.errors:
            logger.info(
                "Digest tick: %d schedules claimed (%d digests to send, %d empty, %d muted), "
                "%d schedules created, %d recomputed, %d jobs published%s",
                report.claimed, report.jobs, report.empty, report.muted, report.created,
                report.recomputed, report.published,
                f"; {'; '.join(report.errors)}" if report.errors else "",
            )  # fmt: skip

    @dramatiq.actor(broker=broker, ledger=True, **options_for(settings, "send_digest"))
    def send_digest(job_id: int) -> None:
        ctx = start(pool, job_id)
        with deferring():  # smtp circuit open or rate limit reached: put off, no retry spent
            outcome = send_one_digest(ctx, pool, settings, services.mailer, services.summariser)
        if outcome.summary is not None:
            record_tokens(outcome.summary.prompt_tokens, outcome.summary.completion_tokens)

    return digest_tick, send_digest
