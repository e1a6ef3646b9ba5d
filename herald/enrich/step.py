"""The enrich step: alias personal data, ask the model for a summary, hand off to email.

The summary and the email jobs are written in one transaction with this job's
completion (the ledger is the outbox); the caller publishes after commit. When
the AI fails for good the email still goes out, marked "summary unavailable",
unless the route says `on_ai_failure = "hold"`: then the job keeps retrying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.breaker import CircuitOpen, guarded
from herald.config import Settings
from herald.enrich.ai import Summariser, Summary
from herald.enrich.pii import alias_pii
from herald.enrich.prompts import MAX_PROMPT_CHARS
from herald.errors import PermanentError, TransientError
from herald.ledger import JobContext, JobRef, NewJob
from herald.sql import queries

logger = logging.getLogger(__name__)


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
) -> EnrichOutcome:
    """Summarise one notification and write its email jobs; returns them for publishing."""
    job, notification = ctx.job, ctx.notification
    changes, existing = ctx.changes, ctx.summary
    if notification is None:
        raise PermanentError(f"notification {job['notification_id']} does not exist")

    summary: Summary | None = None
    aliases: dict[str, str] = {}
    error: str | None = None
    fold_breaker: str | None = None  # the breaker whose success enrich_handoff records
    if existing and existing["status"] in ("ok", "offline"):
        status = "skipped"  # a previous attempt summarised, then died before handing off
    else:
        aliased = alias_pii(
            [c.as_data() for c in changes],
            settings.ai.pii_fields,
            synonyms=settings.pii_synonyms_for(notification["route"]),
            max_chars=MAX_PROMPT_CHARS,  # alias only what can reach the model
        )
        aliases = aliased.aliases
        try:
            # Rate limit and circuit breaker first: they may raise Postponed (deferred).
            known = ctx.breakers.get("ai", "closed")
            with guarded(pool, settings, "ai", known_state=known) as call:
                with call.made():
                    summary = summariser.summarise(aliased.data)
                if call.breaker is not None and not call.probe:
                    # A success admitted while closed ends a run of failures: recorded by
                    # the hand-off statement below, one round trip fewer (as the email
                    # step's delivery_sent_job_complete does). A probe's is written apart.
                    call.success_recorded = True
                    fold_breaker = call.breaker
            status = "offline" if summary.offline else "ok"
        except CircuitOpen as exc:
            # The AI is down: the job is deferred (no retry spent). A "send" route stops
            # waiting once the outage has lasted max_deferral_seconds, or at once when this
            # job has already spent its retries on the AI, and goes out plain; a "hold"
            # route keeps waiting.
            waited_enough = exc.open_for >= settings.breakers.max_deferral_seconds
            if notification["on_ai_failure"] == "hold" or not (waited_enough or final_attempt):
                raise
            status = "unavailable"
            error = f"AI circuit open for {exc.open_for:.0f}s: {exc.last_error or 'failing'}"
        except TransientError as exc:
            if notification["on_ai_failure"] == "hold":
                raise HeldForAI(f"AI unavailable, holding the email: {exc}") from exc
            if not final_attempt:
                raise
            status, error = "unavailable", str(exc)
        except PermanentError as exc:
            if notification["on_ai_failure"] == "hold":
                raise
            status, error = "unavailable", str(exc)
        if error:
            logger.warning(
                "Notification %d goes out without a summary: %s", notification["id"], error
            )

    new_jobs = [
        NewJob("send_email", notification["id"], job["change_id"], recipient,
               notification["priority"])
        for recipient in notification["recipients"]
    ]  # fmt: skip
    with db.autocommit(pool) as conn:  # one statement: the summary, the email jobs, complete
        rows = conn.execute(
            queries["enrich_handoff"],
            {
                "job_id": ctx.job_id,
                "save": status != "skipped",
                "notification_id": notification["id"],
                "status": status,
                "summary": summary.text if summary else None,
                "model": summary.model if summary else None,
                "aliases": Jsonb(aliases),
                "prompt_tokens": summary.prompt_tokens if summary else 0,
                "completion_tokens": summary.completion_tokens if summary else 0,
                "error": error,
                "note": f"summary unavailable: {error}" if error else None,
                "breaker": fold_breaker,
                **ledger.job_params(new_jobs),
            },
        ).fetchall()
    if not rows or not rows[0]["completed"]:
        return EnrichOutcome("skipped", [])  # canceled, or finished by a duplicate delivery
    refs = ledger.job_refs([r for r in rows if r["id"] is not None])
    return EnrichOutcome(status, refs, summary, completed=True)
