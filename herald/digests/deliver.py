"""The digest step: render one run's digest and send it exactly once.

As a single email is sent (herald/email/deliver.py), but the run row is the delivery: it
is claimed 'sending' before SMTP under an advisory lock held on the worker's connection,
and marked 'sent' after, with the job's completion and the counters, in one statement. A
run found 'sending' with its lock free was left by a worker that died, maybe after the
server accepted it: it is sent again with the same Message-ID (derived from the run's
schedule and period) and flagged ambiguous.

With `ai = true` on the route, one AI call writes an overview of the period from the
listed changes, aliased exactly as a single notification's (herald/enrich/pii.py). The AI
being down, slow or refused never holds a digest: it goes out without one, marked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.headerregistry import Address
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.breaker import guarded
from herald.config import DEFAULT_DIGEST_MAX_ITEMS, Settings
from herald.digests.collect import DIGEST_ITEMS, DIGESTS_SENT, ITEM_BUCKETS, bucket_label
from herald.digests.email import render_digest
from herald.digests.store import digest_route
from herald.email.deliver import envelope_address
from herald.email.mailer import Mailer
from herald.email.mime import build_message
from herald.email.view import ChangeView
from herald.enrich.ai import Summariser, Summary
from herald.enrich.pii import alias_pii
from herald.enrich.prompts import MAX_PROMPT_CHARS
from herald.enrich.sanitise import restore_summary
from herald.errors import HeraldError, PermanentError, TransientError
from herald.ledger import JobContext
from herald.ratelimit import Postponed
from herald.schedules import zone
from herald.sql import queries
from herald.unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)

OVERVIEW_UNAVAILABLE = (
    "Overview unavailable: the AI step failed, so this digest lists the changes only."
)
OVERVIEW_OFFLINE = "Offline overview: written by Herald without an AI model."


@dataclass(frozen=True)
class DigestOutcome:
    status: str  # sent | already_sent | muted
    items: int = 0
    ambiguous: bool = False
    overview: str | None = None  # ok | offline | unavailable; None: not asked
    summary: Summary | None = None  # the AI's answer this attempt (its tokens)


def send_digest(
    ctx: JobContext,
    pool: ConnectionPool,
    settings: Settings,
    mailer: Mailer,
    summariser: Summariser,
) -> DigestOutcome:
    """Render and send the digest of the run `ctx`'s job sends; idempotent across
    redeliveries and retries. Completes the job in its own statement."""
    with db.autocommit(pool) as conn:
        run = conn.execute(queries["digest_run_for_job"], {"job_id": ctx.job_id}).fetchone()
        if run is None:
            raise PermanentError(f"job {ctx.job_id} sends no digest")
        if run["status"] == "sent":
            ledger.complete(conn, ctx.job_id)
            return DigestOutcome("already_sent", run["items"])
        if run["muted"]:
            conn.execute(queries["digest_skipped_muted"], {"id": run["id"], "job_id": ctx.job_id})
            return DigestOutcome("muted", run["items"])
        route = digest_route(settings, run["route"])
        limit = route.digest_max_items if route else DEFAULT_DIGEST_MAX_ITEMS
        rows = conn.execute(queries["digest_run_items"], {"run_id": run["id"], "limit": limit})
        changes = [_view(r) for r in rows.fetchall()]
    if not changes:
        raise PermanentError(f"digest {run['id']} has no notifications left to list")
    overview, note, summary = _overview(ctx, run, changes, pool, settings, summariser)
    tz = zone(run["timezone"])
    link = unsubscribe_url(settings, run["route"], run["recipient"])
    rendered = render_digest(
        changes,
        count=run["items"],
        route=run["route"],
        schedule=run["schedule"],
        timezone=tz,
        timezone_name=run["timezone"],
        period_start=run["period_start"],
        period_end=run["period_end"],
        overview=overview,
        overview_note=note,
        label_field=route.label_field if route else None,
        templates_dir=settings.mail_templates_dir,
        unsubscribe_url=link,
    )
    to = _to(run)
    message = build_message(
        rendered,
        mail_from=settings.mail_from,
        recipient=to,
        message_id=run["message_id_header"],
        change_ids=[c.change_id for c in changes],
        unsubscribe_url=link,
    )
    marked = note if note == OVERVIEW_UNAVAILABLE else None  # kept as the job's last_error
    ambiguous = _deliver(ctx, run, pool, settings, mailer, message, to, marked)
    if ambiguous is None:
        return DigestOutcome("already_sent", run["items"])
    status = run["overview_status"] if summary is None else summary_status(summary)
    return DigestOutcome("sent", run["items"], ambiguous, status if route and route.ai else None,
                         summary)  # fmt: skip


def summary_status(summary: Summary) -> str:
    return "offline" if summary.offline else "ok"


def _view(row: dict[str, Any]) -> ChangeView:
    return ChangeView(
        change_id=row["id"],
        table=row["table_name"],
        operation=row["operation"],
        row_pk=row["row_pk"] or {},
        old_row=row["old_row"],
        new_row=row["new_row"],
        changed_at=row["changed_at"],
        columns=tuple(row["table_columns"] or ()),
    )


def _to(run: dict[str, Any]) -> str:
    """The To header: the directory's display name, else the address as a route or a row
    gave it, else the bare address."""
    if run["display_name"]:
        try:
            return str(Address(display_name=run["display_name"], addr_spec=run["recipient"]))
        except (ValueError, TypeError):
            pass
    return run["to_address"] or run["recipient"]


def _overview(
    ctx: JobContext,
    run: dict[str, Any],
    changes: list[ChangeView],
    pool: ConnectionPool,
    settings: Settings,
    summariser: Summariser,
) -> tuple[str | None, str | None, Summary | None]:
    """(the overview with real values back, the note beside it, the AI's answer when it
    was asked now). A retried send reuses the overview an earlier attempt saved."""
    route = digest_route(settings, run["route"])
    if route is None or not route.ai or not settings.ai.enabled:
        return None, None, None
    if run["overview_status"] is not None:
        return _shown(run["overview_status"], run["overview"], run["overview_aliases"]) + (None,)
    data = [
        {"table": c.table, "operation": c.operation, "key": c.row_pk, "old_row": c.old_row,
         "new_row": c.new_row}
        for c in changes
    ]  # fmt: skip
    aliased = alias_pii(
        data,
        settings.ai.pii_fields,
        synonyms=settings.pii_synonyms_for(run["route"]),
        max_chars=MAX_PROMPT_CHARS,  # alias only what can reach the model
    )
    summary: Summary | None = None
    error: str | None = None
    try:
        known = ctx.breakers.get("ai", "closed")
        with guarded(pool, settings, "ai", known_state=known) as call, call.made():
            summary = summariser.summarise(aliased.data)
        status = summary_status(summary)
    except Postponed as exc:  # the ai circuit is open, or its rate limit reached: no wait
        status, error = "unavailable", exc.reason
    except HeraldError as exc:
        status, error = "unavailable", str(exc)
    if error:
        logger.warning("Digest %d goes out without an overview: %s", run["id"], error)
    with db.autocommit(pool) as conn:
        conn.execute(
            queries["digest_overview_saved"],
            {"id": run["id"], "status": status, "overview": summary.text if summary else None,
             "aliases": Jsonb(aliased.aliases), "error": error},
        )  # fmt: skip
    return _shown(status, summary.text if summary else None, aliased.aliases) + (summary,)


def _shown(
    status: str, text: str | None, aliases: dict[str, str] | None
) -> tuple[str | None, str | None]:
    if status == "unavailable" or not text:
        return None, OVERVIEW_UNAVAILABLE
    restored = restore_summary(text, aliases or {})
    return restored, OVERVIEW_OFFLINE if status == "offline" else None


def _deliver(
    ctx: JobContext,
    run: dict[str, Any],
    pool: ConnectionPool,
    settings: Settings,
    mailer: Mailer,
    message: bytes,
    to: str,
    note: str | None,
) -> bool | None:
    """Send once: whether it was ambiguous, or None when it had been sent already."""
    key = f"digest:{run['id']}"
    with db.autocommit(pool) as conn:
        got = conn.execute(queries["digest_try_lock"], {"key": key}).fetchone()
        if not got or not got["locked"]:
            raise TransientError(f"digest {run['id']} is being sent elsewhere")
        locked = True
        try:
            # Rate limit and circuit breaker (may raise Postponed: the job is deferred)
            # before the run is claimed, so a deferral leaves nothing 'sending'.
            known = ctx.breakers.get("smtp", "closed")
            with guarded(pool, settings, "smtp", known_state=known) as call:
                claimed = conn.execute(queries["digest_sending"], {"id": run["id"]}).fetchone()
                if claimed is None or claimed["already_sent"]:
                    ledger.complete(conn, ctx.job_id)
                    return None
                try:
                    with call.made():
                        mailer.send(
                            message,
                            from_addr=envelope_address(settings.mail_from),
                            to_addrs=[envelope_address(to)],
                        )
                except (TransientError, PermanentError) as exc:
                    status = "failed" if isinstance(exc, PermanentError) else "pending"
                    conn.execute(
                        queries["digest_released"],
                        {"id": run["id"], "status": status, "error": str(exc)[:1000]},
                    )
                    raise
                fold = call.breaker is not None and not call.probe
                conn.execute(
                    queries["digest_sent"],
                    {"id": run["id"], "job_id": ctx.job_id, "note": note, "key": key,
                     "breaker": call.breaker if fold else None,
                     "counts": Jsonb(sent_counts(run["items"]))},
                )  # fmt: skip
                locked = False  # digest_sent released it
                call.success_recorded = fold
                return bool(claimed["ambiguous"])
        finally:
            if locked:
                conn.execute(queries["digest_release_lock"], {"key": key})


def sent_counts(items: int) -> list[dict[str, Any]]:
    """The ledger counters one sent digest adds: sent, and its items as a histogram."""
    counts: list[dict[str, Any]] = [{"metric": DIGESTS_SENT, "label": "", "value": 1}]
    for bound in ITEM_BUCKETS:
        if items <= bound:
            counts.append({"metric": DIGEST_ITEMS, "label": bucket_label(bound), "value": 1})
    counts.append({"metric": DIGEST_ITEMS, "label": "sum", "value": items})
    counts.append({"metric": DIGEST_ITEMS, "label": "count", "value": 1})
    return counts
