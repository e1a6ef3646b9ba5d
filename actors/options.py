"""Per-actor Dramatiq options from the configured retry policies."""

from __future__ import annotations

from typing import Any

from actors import runtime
from herald.errors import PermanentError


def options_for(actor: str) -> dict[str, Any]:
    policy = runtime.settings().retries[actor]
    return {
        "max_retries": policy.max_retries,
        "min_backoff": policy.min_backoff_ms,
        "max_backoff": policy.max_backoff_ms,
        "time_limit": policy.time_limit_ms,
        # Bad data and 5xx answers are permanent: never retried, failed with their reason.
        "throws": (PermanentError,),
    }
