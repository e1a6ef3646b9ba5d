"""The sweep actor: every minute, re-drive jobs the broker lost (see orchestrator.sweep)."""

from __future__ import annotations

import logging

import dramatiq
from periodiq import cron

from actors.options import options_for
from actors.publish import Publisher
from herald.services import Services
from orchestrator.sweep import sweep as sweep_ledger

logger = logging.getLogger(__name__)


def declare(broker: dramatiq.Broker, services: Services, publish: Publisher) -> dramatiq.Actor:
    """Declare `sweep` on `broker`, fired every minute."""
    options = options_for(services.settings, "sweep")

    @dramatiq.actor(broker=broker, periodic=cron("* * * * *"), **options)
    def sweep() -> None:
        report = sweep_ledger(services.pool, services.settings, publish)
        if report.unpublished or report.lost_retries or report.stale_running:
            logger.warning(
                "Sweeper republished %d unpublished jobs, %d lost retries, %d stale running jobs",
                report.unpublished,
                report.lost_retries,
                report.stale_running,
            )

    return sweep
