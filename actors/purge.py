"""The purge actor: every hour, remove finished ledger rows older than `[retention] days`.

Hourly rather than daily: each run is bounded (`max_runtime_seconds`, under the time
limit) and a steady trickle of small deletes keeps tables and autovacuum calm. Failed
jobs are never purged here; `herald jobs purge --include-failed` does that on request.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq
from periodiq import cron

from actors.options import options_for
from herald.retention import purge as purge_finished
from herald.services import Services

logger = logging.getLogger(__name__)


def declare(broker: dramatiq.Broker, services: Services) -> dramatiq.Actor:
    """Declare `purge` on `broker`, fired every hour."""
    options = options_for(services.settings, "purge")

    @dramatiq.actor(broker=broker, periodic=cron("23 * * * *"), **options)
    def purge() -> None:
        retention = services.settings.retention
        if retention.days <= 0:
            return
        report = purge_finished(
            services.pool,
            timedelta(days=retention.days),
            include_failed=False,
            batch_size=retention.batch_size,
            max_runtime=retention.max_runtime_seconds,
        )
        if report.total or not report.complete:
            logger.info(
                "Purged rows finished before %s: %s%s",
                report.cutoff,
                ", ".join(f"{k} {v}" for k, v in report.counts().items()),
                "" if report.complete else " (time budget spent; the next run carries on)",
            )

    return purge
