"""How long a send route's email may still wait for its summary.

A route with `on_ai_failure = "send"` promises that the AI never holds its email back for
long: at the latest `[ai] max_delay_seconds` after its notification is due, the email goes
out, with the summary or marked "summary unavailable". The enrich step and its actor keep
that promise together, whatever the AI does:

- an AI call is started only when it can end before the deadline (a call takes at most
  `[ai] timeout_seconds` per try of the client, `AISettings.call_seconds`);
- after a failure, the next attempt is scheduled early enough to make its call in time
  (the actor caps Dramatiq's backoff: `retry_in_ms`), or the email goes out now;
- with the ai circuit open, it goes out at once (herald/enrich/step.py).

The clock is the database's: `notification["due_for_seconds"]`, read in the statement
that started the attempt, so workers on other machines agree with it. A hold route has no
deadline: its email waits for the summary as long as it takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herald.config import Settings

#: A retry is scheduled this long before its last chance to call in time: Dramatiq hands
#: a delayed message over up to a second late (its consumers wake once a second).
RETRY_MARGIN_SECONDS = 1.0
#: Less slack than this after a failure, and no retry is scheduled: the email goes now.
MIN_RETRY_SECONDS = RETRY_MARGIN_SECONDS + 0.25


@dataclass(frozen=True)
class SummaryDeadline:
    """The deadline of one attempt: `left` seconds from `started` (monotonic) onwards."""

    left_at_start: float
    #: The longest one AI call may take.
    call_seconds: float
    max_delay_seconds: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    started: float = field(default=0.0)

    @classmethod
    def of(
        cls,
        notification: dict[str, Any] | None,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> SummaryDeadline | None:
        """The deadline for this notification's summary; None for a hold route (or a
        notification that is gone: the step refuses it)."""
        if notification is None or notification.get("on_ai_failure") == "hold":
            return None
        due_for = float(notification.get("due_for_seconds") or 0.0)
        ai = settings.ai
        return cls(
            left_at_start=ai.max_delay_seconds - max(due_for, 0.0),
            call_seconds=ai.call_seconds,
            max_delay_seconds=ai.max_delay_seconds,
            clock=clock,
            started=clock(),
        )

    def left(self) -> float:
        """Seconds until the email must go."""
        return self.left_at_start - (self.clock() - self.started)

    def slack(self) -> float:
        """Seconds an AI call may still wait before starting and end in time (negative:
        none can)."""
        return self.left() - self.call_seconds

    def allows_call(self) -> bool:
        return self.slack() >= 0

    def allows_retry(self) -> bool:
        """A later attempt can still make its call in time."""
        return self.slack() >= MIN_RETRY_SECONDS

    def retry_in_ms(self, backoff_ms: int) -> int:
        """The delay of the next attempt: the backoff, but no later than its last chance
        to call (less a margin for the trip)."""
        return max(0, min(backoff_ms, int((self.slack() - RETRY_MARGIN_SECONDS) * 1000)))

    def describe(self) -> str:
        return f"no summary within [ai] max_delay_seconds ({self.max_delay_seconds:g}s)"
