"""The orchestrate actor: fired every minute by periodiq, drains the change log."""

from __future__ import annotations

import logging

import dramatiq
from periodiq import cron

from actors.options import options_for
from actors.publish import Publisher
from herald.services import Services
from orchestrator.orchestrate import run_orchestrator

logger = logging.getLogger(__name__)


def declare(broker: dramatiq.Broker, services: Services, publish: Publisher) -> dramatiq.Actor:
    """Declare `orchestrate` on `broker`, fired every minute."""
    options = options_for(services.settings, "orchestrate")

    @dramatiq.actor(broker=broker, periodic=cron("* * * * *"), **options)
    def orchestrate() -> None:
        report = run_orchestrator(services.pool, services.settings, publish)
        logger.info(
            "Orchestrated %d changes in %d batches: %d routed, %d skipped, %d failed; "
            "%d jobs published, %d republished%s",
            report.claimed,
            report.batches,
            report.routed,
            report.skipped,
            report.failed,
            report.published,
            report.republished,
            " (another orchestrator holds the lock)" if report.locked_out else "",
        )

    return orchestrate
