"""Retries of periodic actors survive periodiq's skip of stale ticks.

periodiq stamps each tick with `scheduled_at` and skips a message older than
`skip_delay` (30 s): a backlog of minute ticks is useless. But Dramatiq's Retries
re-enqueues the *same* message, `scheduled_at` included, so a retry due after
the skip delay (any backoff past 30 s) would be skipped and the retry silently
lost. A retried message is not a stale tick: this middleware, placed before
PeriodiqMiddleware, drops `scheduled_at` from any message that is a retry, so
periodiq treats it as manually triggered and runs it.

Herald's orchestrate and sweep actors retry not at all by default (the next
tick is the retry); the hourly purge retries, and a herald.toml may give the
others retries too.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware


class PeriodicRetries(Middleware):
    """Forget `scheduled_at` on retries, so periodiq never skips a retry as a stale tick."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.options.get("retries") and "scheduled_at" in message.options:
            message.options.pop("scheduled_at")
