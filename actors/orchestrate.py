"""The orchestrate actor: fired every minute by periodiq, drains the change log."""

from __future__ import annotations

import logging

import dramatiq
from periodiq import cron

from actors import runtime
from actors.options import options_for
from actors.publish import publish
from orchestrator.orchestrate import run_orchestrator

logger = logging.getLogger(__name__)


@dramatiq.actor(queue_name="orchestrate", periodic=cron("* * * * *"), **options_for("orchestrate"))
def orchestrate() -> None:
    rt = runtime.runtime()
    report = run_orchestrator(rt.pool, rt.settings, publish)
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
