"""The sections of herald.toml other than routes and `[api]`: `[mail]`, `[ai]`,
`[orchestrator]`, `[breakers]`, `[limits]`, `[retention]`, `[broker]` and `[retries.<actor>]`.

Each is a frozen dataclass validated by pydantic: its fields are its options, with their
defaults and bounds; an option it does not know is refused (herald/config/messages.py says
which, and the closest known one).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, get_args

from annotated_types import Gt, Interval, Le
from pydantic import Field, Strict, StringConstraints, model_validator

from herald.changes import MAX_CHANGE_BYTES, MAX_CHANGE_DEPTH
from herald.config.values import (
    ColumnNames,
    EmailAddress,
    Flag,
    Must,
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveInt,
    Synonyms,
    Text,
    section,
)

DEFAULT_MAIL_FROM = "Herald <herald@localhost>"
#: Email jobs per `send_emails` message: one RabbitMQ delivery and one ledger statement
#: serve them all (actors/email.py). Small, so a batch stays short next to its time limit.
DEFAULT_MAIL_BATCH_SIZE = 20
MAX_MAIL_BATCH_SIZE = 200
#: Enrich jobs per `enrich_batch` message, and AI calls in flight per worker process
#: (herald/enrich/batch.py): a worker thread waits for its batch, not for each call.
DEFAULT_AI_BATCH_SIZE = 20
MAX_AI_BATCH_SIZE = 200
#: 128 per process: with 2 processes and a model answering in 200 ms, AI routes can go at up
#: to 1,280 changes/s, more than the workers' own ceiling on 2 cores (64 capped them at 640,
#: issue 13); in flight is throughput x latency. The provider's own limits are
#: `[limits] ai_requests_per_minute`'s to respect.
DEFAULT_AI_MAX_CONCURRENCY = 128
MAX_AI_MAX_CONCURRENCY = 1000
#: Highest `[limits] max_change_depth`: Python's JSON decoder raises RecursionError near 1,000.
MAX_CHANGE_DEPTH_CEILING = 500
#: Backoffs and breaker periods stay far below RabbitMQ's 30-minute consumer_timeout:
#: delayed messages wait unacked in worker memory.
MAX_BACKOFF_CEILING_MS = 15 * 60 * 1000
CONSUMER_TIMEOUT = "longer holds messages unacked until RabbitMQ's consumer_timeout requeues them"


def _between(lowest: int, highest: int) -> str:
    return f"an integer from {lowest} to {highest}"


MailBatchSize = Annotated[
    int,
    Strict(),
    Interval(ge=1, le=MAX_MAIL_BATCH_SIZE),
    Must(_between(1, MAX_MAIL_BATCH_SIZE)),
]


@section
class MailSection:
    """`[mail]`, as written in herald.toml (Settings holds it as `mail_*`)."""

    #: `from`, overridden by HERALD_MAIL_FROM.
    sender: Annotated[EmailAddress | None, Field(alias="from")] = None
    batch_size: MailBatchSize = DEFAULT_MAIL_BATCH_SIZE
    #: Relative to herald.toml's folder (settings_from_mapping makes it absolute).
    templates_dir: (
        Annotated[str, Strict(), StringConstraints(pattern=r"\S"), Must("a folder path")] | None
    ) = None


@section
class AISettings:
    enabled: Flag = True
    model: Text = "gpt-4o-mini"
    #: Columns whose values are aliased, in any form (firstName, FIRST-NAME), with the
    #: shipped synonyms of each (surname for last_name): herald/enrich/pii_fields.py.
    pii_fields: ColumnNames = ("email", "phone", "first_name", "last_name")
    #: More column names to alias, by alias type: `{ phone = ["handy"] }`.
    pii_synonyms: Synonyms = dataclasses.field(default_factory=dict, hash=False)
    timeout_seconds: Positive = 20.0
    max_retries: NonNegativeInt = 0  # the client's own retries; Dramatiq's Retries owns retrying
    #: The longest an email of an on_ai_failure = "send" route waits for its summary, from
    #: the moment its notification is due, whatever the AI does (herald/enrich/deadline.py).
    max_delay_seconds: Positive = 60.0
    #: Enrich jobs per `enrich_batch` message, their AI calls made together (1: one
    #: message per job; herald/enrich/batch.py).
    batch_size: Annotated[
        int, Strict(), Interval(ge=1, le=MAX_AI_BATCH_SIZE), Must(_between(1, MAX_AI_BATCH_SIZE))
    ] = DEFAULT_AI_BATCH_SIZE
    #: AI calls in flight at once in one worker process, whatever its threads.
    max_concurrency: Annotated[
        int,
        Strict(),
        Interval(ge=1, le=MAX_AI_MAX_CONCURRENCY),
        Must(_between(1, MAX_AI_MAX_CONCURRENCY)),
    ] = DEFAULT_AI_MAX_CONCURRENCY

    @property
    def call_seconds(self) -> float:
        """The longest one summary request may take: the client's timeout, per try."""
        return self.timeout_seconds * (self.max_retries + 1)

    @model_validator(mode="after")
    def _one_call_fits_the_deadline(self) -> AISettings:
        if self.call_seconds >= self.max_delay_seconds:
            raise ValueError(
                f"timeout_seconds x (max_retries + 1) = {self.call_seconds:g}s must be under "
                f"max_delay_seconds ({self.max_delay_seconds:g}s): one request to the AI could "
                "otherwise hold a send route's email past it"
            )
        return self


@section
class OrchestratorSettings:
    #: Changes claimed per batch, in one transaction: a batch's fixed costs (the lock, each
    #: statement's round trip, a round of publisher confirms) are paid once for all of
    #: them, and its jobs leave in full email and enrich batches. 1,000 cost no less CPU
    #: per change, but the worker running it holds ~3.5 MB more at once, which its heap
    #: keeps (RSS +9% over 100,000 changes against +2%: docs/performance.md).
    batch_size: PositiveInt = 200
    max_runtime_seconds: Positive = 90.0
    republish_after_seconds: NonNegative = 30.0
    #: Changes one debounced notification lists at most; past it a new notification starts
    #: (no change is dropped). 100: what one email lists (herald/email/render.py).
    max_changes_per_notification: PositiveInt = 100


@section
class BreakerSettings:
    """`[breakers]`, for both the smtp and the ai breaker (herald/breaker.py).

    `failure_threshold` transient failures in a row open a breaker (0: no breakers); it
    stays open `reset_seconds`, then lets one probe through per period. With the ai
    breaker open, the emails of routes with on_ai_failure = "send" go out "summary
    unavailable" at once; those of "hold" routes wait. `max_deferral_seconds` is no longer
    read (accepted, so older files still load): `[ai] max_delay_seconds` bounds the wait.
    """

    failure_threshold: NonNegativeInt = 5
    reset_seconds: Annotated[
        float,
        Strict(),
        Gt(0),
        Le(MAX_BACKOFF_CEILING_MS // 1000),
        Must(f"a number above 0 and at most {MAX_BACKOFF_CEILING_MS // 1000} ({CONSUMER_TIMEOUT})"),
    ] = 30.0
    max_deferral_seconds: NonNegative = 300.0


@section
class LimitSettings:
    """`[limits]`: global rate limits across every worker (herald/ratelimit.py), unset
    means unlimited; and how large (bytes of JSON text) and how deeply nested a change may
    be: one over either is failed unloaded (orchestrator/claim.py)."""

    ai_requests_per_minute: Positive | None = None
    emails_per_second: Positive | None = None
    max_change_bytes: PositiveInt = MAX_CHANGE_BYTES
    max_change_depth: Annotated[
        int,
        Strict(),
        Interval(ge=1, le=MAX_CHANGE_DEPTH_CEILING),
        Must(
            f"{_between(1, MAX_CHANGE_DEPTH_CEILING)} (Python's JSON decoder recurses once "
            "per level)"
        ),
    ] = MAX_CHANGE_DEPTH


@section
class RetentionSettings:
    """`[retention]`: the periodic purge (hourly) removes finished rows older than `days`
    (0 turns it off); failed jobs are never purged by it, only by `herald jobs purge`."""

    days: Annotated[
        int, Strict(), Interval(ge=0), Must("a non-negative integer (0: no periodic purge)")
    ] = 30
    batch_size: PositiveInt = 5_000
    max_runtime_seconds: Positive = 120.0


#: `[broker] queue_type`: classic queues (one node, message priorities) or quorum queues
#: (replicated on a cluster; each priority a queue of its own: actors/quorum.py).
QueueType = Literal["classic", "quorum"]
QUEUE_TYPES: tuple[QueueType, ...] = get_args(QueueType)
#: Deliveries of one message before a quorum queue dead-letters it (RabbitMQ 4's default).
DEFAULT_DELIVERY_LIMIT = 20


@section
class BrokerSettings:
    """`[broker]`: the queue type Herald declares, the quorum queues' delivery limit, and
    whether each process shuffles the nodes of HERALD_BROKER_URL (`a;b;c`) so that
    workers spread over a cluster (false: every process tries them in the order given)."""

    queue_type: QueueType = "classic"
    delivery_limit: PositiveInt = DEFAULT_DELIVERY_LIMIT
    shuffle_nodes: Flag = True


@section
class RetryPolicy:
    """Dramatiq Retries options for one actor (`[retries.<actor>]`). Backoffs stay far
    below RabbitMQ's 30-minute consumer_timeout: delayed messages wait unacked in worker
    memory."""

    max_retries: NonNegativeInt
    min_backoff_ms: NonNegativeInt
    max_backoff_ms: Annotated[
        int,
        Strict(),
        Interval(ge=0, le=MAX_BACKOFF_CEILING_MS),
        Must(f"{_between(0, MAX_BACKOFF_CEILING_MS)} ({CONSUMER_TIMEOUT})"),
    ]
    time_limit_ms: NonNegativeInt


def _policy(retries: int, least: int, most: int, limit: int) -> RetryPolicy:
    return RetryPolicy(
        max_retries=retries, min_backoff_ms=least, max_backoff_ms=most, time_limit_ms=limit
    )


#: Defaults per actor; `[retries.<actor>]` in herald.toml overrides any field.
DEFAULT_RETRIES: dict[str, RetryPolicy] = {
    "orchestrate": _policy(0, 1_000, 1_000, 150_000),
    "enrich": _policy(5, 5_000, 120_000, 60_000),
    "send_email": _policy(8, 5_000, 300_000, 60_000),
    "sweep": _policy(0, 1_000, 1_000, 60_000),
    # Hourly; a retry is worth it (the next tick is an hour away), and the periodic-retry
    # middleware keeps periodiq's 30-second skip from dropping it.
    "purge": _policy(3, 10_000, 60_000, 150_000),
    # Every minute, as the orchestrator: the next tick is the retry.
    "digest_tick": _policy(0, 1_000, 1_000, 60_000),
    # One digest email: an AI overview (when the route asks) and SMTP, as send_email.
    "send_digest": _policy(8, 5_000, 300_000, 90_000),
}
