"""Per-actor Dramatiq options from the configured retry policies."""

from __future__ import annotations

from typing import Any

from herald.config import Settings
from herald.errors import PermanentError
from herald.ledger import QUEUES


def options_for(settings: Settings, actor: str) -> dict[str, Any]:
    """`dramatiq.actor` keyword arguments for `actor`: its queue, retries and time limit."""
    policy = settings.retries[actor]
    return {
        "actor_name": actor,
        "queue_name": QUEUES[actor],
        "max_retries": policy.max_retries,
        "min_backoff": policy.min_backoff_ms,
        "max_backoff": policy.max_backoff_ms,
        "time_limit": policy.time_limit_ms,
        # Bad data and 5xx answers are permanent: never retried, failed with their reason.
        "throws": (PermanentError,),
    }
