"""The sweep actor: every minute, re-drive jobs the broker lost (see orchestrator.sweep)."""

from __future__ import annotations

import logging

import dramatiq
from periodiq import cron

from actors import runtime
from actors.options import options_for
from actors.publish import publish
from orchestrator.sweep import sweep as sweep_service

logger = logging.getLogger(__name__)


@dramatiq.actor(queue_name="maintenance", periodic=cron("* * * * *"), **options_for("sweep"))
def sweep() -> None:
    rt = runtime.runtime()
    report = sweep_service(rt.pool, rt.settings, publish)
    if report.unpublished or report.lost_retries or report.stale_running:
        logger.warning(
            "Sweeper republished %d unpublished jobs, %d lost retries, %d stale running jobs",
            report.unpublished,
            report.lost_retries,
            report.stale_running,
        )
