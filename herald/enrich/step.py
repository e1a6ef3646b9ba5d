"""The enrich step: alias personal data, ask the model for a summary, hand off to email.

The summary and the email jobs are written in one transaction with this job's
completion (the ledger is the outbox); the caller publishes after commit. When
the AI fails the email still goes out, marked "summary unavailable", at the latest
`[ai] max_delay_seconds` after its notification was due (herald/enrich/deadline.py),
and at once while the ai circuit is open; unless the route says
`on_ai_failure = "hold"`: then the job keeps retrying until the AI answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from herald.breaker import Call, CircuitOpen, guarded
from herald.config import Settings
from herald.enrich.ai import Summariser, Summary
from herald.enrich.deadline import SummaryDeadline
from herald.enrich.handoff import Summarised, hand_off_batch
from herald.enrich.pii import PiiFields, alias_pii, field_matcher
from herald.enrich.prompts import MAX_PROMPT_CHARS
from herald.errors import PermanentError, TransientError
from herald.ledger import JobContext, JobRef
from herald.ratelimit import Postponed

logger = logging.getLogger(__name__)

#: A deferral comes back up to this much later than asked (actors/deferral.py's jitter).
DEFERRAL_SPREAD = 1.25


class HeldForAI(TransientError):
    """The AI is failing and the route holds its emails until it is back: retry, never give up."""


@dataclass(frozen=True)
class EnrichOutcome:
    summary_status: str  # ok | offline | unavailable | skipped
    email_jobs: list[JobRef]
    summary: Summary | None = None
    #: The hand-off completed the job in its own statement (false: it was no longer running).
    completed: bool = False


def enrich(
    ctx: JobContext,
    pool: ConnectionPool,
    settings: Settings,
    summariser: Summariser,
    *,
    final_attempt: bool,
    deadline: SummaryDeadline | None = None,
) -> EnrichOutcome:
    """Summarise one notification and write its email jobs; returns them for publishing.

    `deadline`: when a send route's email must go (the actor passes the one it schedules
    retries by; None: read from the notification, none for a hold route).
    """
    notification = ctx.notification
    if notification is None:
        raise PermanentError(f"notification {ctx.job['notification_id']} does not exist")
    if ctx.summary and ctx.summary["status"] in ("ok", "offline"):
        result = Summarised("skipped")  # an earlier attempt summarised, then died
    else:
        deadline = deadline or SummaryDeadline.of(notification, settings)
        result = summarise(ctx, pool, settings, summariser, final_attempt, deadline)
        if result.error:
            logger.warning(
                "Notification %d goes out without a summary: %s", notification["id"], result.error
            )
    return hand_off(ctx, pool, result)


@dataclass(frozen=True)
class Prompt:
    """What one notification sends the model: its changes aliased, and the aliases."""

    data: Any
    aliases: dict[str, str]


def summarise(
    ctx: JobContext,
    pool: ConnectionPool,
    settings: Settings,
    summariser: Summariser,
    final_attempt: bool,
    deadline: SummaryDeadline | None,
) -> Summarised:
    """Ask the model, or say why the email goes without a summary; raise to try again later
    (a hold route, or a send route whose deadline leaves time for another attempt)."""
    prompt = prepare(ctx, settings, deadline)
    if isinstance(prompt, Summarised):
        return prompt
    try:
        # Rate limit and circuit breaker first: they may raise Postponed (deferred).
        with guarded(pool, settings, "ai", known_state=ctx.breakers.get("ai", "closed")) as call:
            with call.made():
                summary = summariser.summarise(prompt.data)
            fold = fold_success(call)
        return summarised(summary, prompt, fold)
    except (Postponed, TransientError, PermanentError) as exc:
        return when_failed(exc, deadline, final_attempt)


def prepare(
    ctx: JobContext, settings: Settings, deadline: SummaryDeadline | None
) -> Prompt | Summarised:
    """The prompt for this notification, or why the model is not asked (too late for the
    deadline)."""
    assert ctx.notification is not None
    if deadline is not None and not deadline.allows_call():
        return Summarised("unavailable", error=deadline.describe())  # the model is not asked
    aliased = alias_pii(
        [c.as_data() for c in ctx.changes],
        pii_fields_for(settings, ctx.notification["route"]),
        max_chars=MAX_PROMPT_CHARS,  # alias only what can reach the model
    )
    return Prompt(aliased.data, aliased.aliases)


#: (settings, route) -> the route's field matcher, by the settings' identity: settings
#: are immutable, and a process has one (tests make a few).
_MATCHERS: dict[tuple[int, str | None], tuple[Settings, PiiFields]] = {}
_MAX_MATCHERS = 64


def pii_fields_for(settings: Settings, route: str | None) -> PiiFields:
    """The field matcher of `route` (`[ai] pii_fields`, with `[ai]`'s and the route's
    `pii_synonyms`): worked out once per process and route, not once per change."""
    key = (id(settings), route)
    found = _MATCHERS.get(key)
    if found is not None and found[0] is settings:
        return found[1]
    matcher = field_matcher(settings.ai.pii_fields, settings.pii_synonyms_for(route))
    if len(_MATCHERS) >= _MAX_MATCHERS:
        _MATCHERS.clear()
    _MATCHERS[key] = (settings, matcher)
    return matcher


def fold_success(call: Call) -> str | None:
    """The breaker whose success the hand-off records, or None (no breaker, or a probe)."""
    if call.breaker is not None and not call.probe:
        # A success admitted while closed ends a run of failures: recorded by the hand-off
        # statement, one round trip fewer (as the email step does). A probe's is written
        # apart.
        call.success_recorded = True
        return call.breaker
    return None


def summarised(summary: Summary, prompt: Prompt, fold: str | None) -> Summarised:
    status = "offline" if summary.offline else "ok"
    return Summarised(status, summary, prompt.aliases, breaker=fold)


def when_failed(
    exc: Postponed | TransientError | PermanentError,
    deadline: SummaryDeadline | None,
    final_attempt: bool,
) -> Summarised:
    """After a failed or refused call: the email goes without a summary (returned), or the
    exception is raised to try again later (a hold route; a send route whose deadline
    leaves time for another attempt; a deferral)."""
    hold = deadline is None
    if isinstance(exc, CircuitOpen):
        # The AI is down: a hold route's job is deferred (no retry spent) until the probe;
        # a send route's email goes out now.
        if hold:
            raise exc
        return Summarised(
            "unavailable",
            error=f"AI circuit open for {exc.open_for:.0f}s: {exc.last_error or 'failing'}",
        )
    if isinstance(exc, Postponed):  # the rate limit: wait for a slot if the deadline allows
        if deadline is None or exc.retry_in * DEFERRAL_SPREAD < deadline.slack():
            raise exc
        return Summarised("unavailable", error=f"{deadline.describe()}: {exc.reason}")
    if isinstance(exc, TransientError):
        if deadline is None:
            raise HeldForAI(f"AI unavailable, holding the email: {exc}") from exc
        if final_attempt:
            return Summarised("unavailable", error=str(exc))
        if not deadline.allows_retry():
            return Summarised("unavailable", error=f"{exc} ({deadline.describe()})")
        raise exc  # the actor tries again in time for the deadline
    if hold:  # PermanentError
        raise exc
    return Summarised("unavailable", error=str(exc))


def hand_off(ctx: JobContext, pool: ConnectionPool, result: Summarised) -> EnrichOutcome:
    """One statement: the summary saved, the email jobs written, this job complete (the
    enrich batch's hand-off, for a batch of one)."""
    assert ctx.notification is not None
    completed, refs = hand_off_batch(pool, [(ctx, result)])
    if ctx.job_id not in completed:
        return EnrichOutcome("skipped", [])  # canceled, or finished by a duplicate delivery
    return EnrichOutcome(result.status, refs, result.summary, completed=True)
