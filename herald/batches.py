"""What became of the jobs of a batch message, the part email and enrich batches share.

A batch message carries several ledger jobs; each job keeps its own fate. Both batch
steps report it the same way: the jobs that failed for good, those put off (deferred),
those handed back untried, and those that did not start; and a transient failure is a
`Retry` of either. Each step adds its own lists (emails sent; summaries handed off;
transient failures to retry alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.ledger import JobRef
from herald.ratelimit import Postponed


@dataclass(frozen=True)
class Deferral:
    """A job put off (circuit open, rate limit): pending, to run alone after `postponed`."""

    ref: JobRef
    postponed: Postponed

    @property
    def job_id(self) -> int:
        return self.ref.id


@dataclass(frozen=True)
class Retry:
    """A job that failed transiently: pending, to be retried alone after its backoff."""

    ref: JobRef
    error: str
    seconds: float

    @property
    def job_id(self) -> int:
        return self.ref.id


@dataclass
class BatchOutcome:
    """The fates every batch step reports (every started job is in exactly one list)."""

    failed: list[tuple[int, str]] = field(default_factory=list)  # (job id, reason)
    deferred: list[Deferral] = field(default_factory=list)
    #: Not tried: publish them again, alone (after a failure) or as a batch (time budget).
    handed_back: list[JobRef] = field(default_factory=list)
    hand_back_alone: bool = False
    #: Jobs of the message that did not start (canceled, superseded, done): their status.
    not_started: dict[int, str] = field(default_factory=dict)
