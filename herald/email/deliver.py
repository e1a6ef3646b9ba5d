"""The email step: render a notification for one recipient and send it exactly once.

A delivery row per (notification, recipient) is claimed ('sending') and committed
before SMTP and marked 'sent' after. While sending, the worker holds a
PostgreSQL advisory lock on its own connection: if the worker dies, PostgreSQL
drops the lock, so a later attempt that finds the row still 'sending' knows the
earlier attempt is gone, not slow. That is the one ambiguous case (the server
may have accepted the message before the crash): the email is sent again with
the same Message-ID, and the delivery is flagged `ambiguous`, never silently.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from email.utils import parseaddr

from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.breaker import Call, guarded
from herald.config import Settings
from herald.email.mailer import Mailer
from herald.email.mime import build_message, message_id_for
from herald.email.render import ChangeView, render_notification
from herald.enrich.sanitise import restore_summary
from herald.errors import PermanentError, TransientError
from herald.ledger import JobContext
from herald.ratelimit import limiter_for
from herald.recipients import bare
from herald.sql import queries
from herald.templating import presentation_for
from herald.unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)

SUMMARY_UNAVAILABLE = "Summary unavailable: the AI step failed, so this email shows the raw change."
SUMMARY_OFFLINE = "Offline summary: written by Herald without an AI model."
SUMMARY_WITHDRAWN = (
    "Summary withdrawn: the personal data it refers to was deleted once every email of this "
    "notification was sent or had failed, so this email shows the raw change."
)


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # sent | already_sent
    ambiguous: bool = False
    message_id: str | None = None
    #: The job was completed with the delivery, in the same statement (so the caller
    #: need not complete it); true for every outcome this module returns today.
    completed: bool = True


def summary_for(summary_row: dict | None) -> tuple[str | None, str | None]:
    """(summary text with real values put back, note shown beside it)."""
    if summary_row is None:
        return None, None
    if summary_row["status"] == "unavailable":
        return None, SUMMARY_UNAVAILABLE
    if summary_row["aliases"] is None:  # deleted when every delivery was final (queries.sql)
        return None, SUMMARY_WITHDRAWN
    text = restore_summary(summary_row["summary"] or "", summary_row["aliases"] or {})
    return text, SUMMARY_OFFLINE if summary_row["status"] == "offline" else None


def send_notification_email(
    ctx: JobContext,
    pool: ConnectionPool,
    settings: Settings,
    mailer: Mailer,
    *,
    conn: db.DictConnection | None = None,
) -> DeliveryOutcome:
    """Render and send one job's email; idempotent across redeliveries and retries.

    `conn`: a pooled connection in autocommit mode that the caller holds for several
    emails (an email batch: one checkout a batch instead of one an email); without it,
    one is checked out for this email.
    """
    job, notification = ctx.job, ctx.notification
    changes, summary_row = ctx.changes, ctx.summary
    if notification is None:
        raise PermanentError(f"notification {job['notification_id']} does not exist")
    breaker_state = ctx.breakers.get("smtp", "closed")

    recipient = job["recipient"]
    message_id = message_id_for(notification["id"], recipient, settings.mail_domain)
    summary, note = summary_for(summary_row)
    columns = tuple(ctx.job.get("table_columns") or ())  # the table's column order
    rendered = render_notification(
        [
            ChangeView(
                change_id=c.id,
                table=c.table_name,
                operation=c.operation,
                row_pk=c.row_pk or {},
                old_row=c.old_row,
                new_row=c.new_row,
                changed_at=c.changed_at,
                columns=columns,
            )
            for c in changes
        ],
        summary=summary,
        summary_note=note,
        route=notification["route"],
        presentation=presentation_for(settings, notification["route"]),
    )
    message = build_message(
        rendered,
        mail_from=settings.mail_from,
        recipient=recipient,
        message_id=message_id,
        change_ids=[c.id for c in changes],
        # [api] public_url set: the one-click unsubscribe link (herald/unsubscribe.py).
        unsubscribe_url=unsubscribe_url(settings, notification["route"], bare(recipient)),
    )
    delivery = _Delivery(ctx.job_id, notification["id"], recipient, message_id, message,
                         note="; ".join(rendered.warnings) or None)  # fmt: skip

    # Autocommit: each statement below is its own transaction, one round trip each.
    held = contextlib.nullcontext(conn) if conn is not None else db.autocommit(pool)
    with held as conn:
        if breaker_state == "closed" and limiter_for(settings, "smtp") is None:
            return _send_fast(conn, pool, settings, mailer, delivery)
        got = conn.execute(queries["try_delivery_lock"], {"key": delivery.lock_key}).fetchone()
        if not got or not got["locked"]:
            raise TransientError(
                f"delivery to notification {notification['id']} is being sent elsewhere"
            )
        try:
            # Rate limit and circuit breaker (may raise Postponed: the job is deferred)
            # before the delivery row is claimed, so a deferral leaves nothing 'sending'.
            with guarded(pool, settings, "smtp", known_state=breaker_state) as call:
                claimed = _claim(conn, delivery)
                if isinstance(claimed, DeliveryOutcome):
                    return claimed
                return _send(conn, settings, mailer, delivery, *claimed, call)
        finally:
            _release_lock(conn, delivery)


@dataclass
class _Delivery:
    job_id: int
    notification_id: int
    recipient: str
    message_id: str
    message: bytes
    #: Kept as the job's last_error when it completes (a subject template that failed).
    note: str | None = None
    #: False once `delivery_sent_job_complete` released the advisory lock with the row.
    locked: bool = True

    @property
    def lock_key(self) -> str:
        return f"delivery:{self.notification_id}:{self.recipient}"

    @property
    def params(self) -> dict:
        return {"notification_id": self.notification_id, "recipient": self.recipient}


def _send_fast(conn, pool, settings, mailer, delivery: _Delivery) -> DeliveryOutcome:
    """No rate limit and a closed breaker (read as the job started): the advisory lock and
    the delivery's claim in one statement, the send, then sent + complete in one."""
    with guarded(pool, settings, "smtp", known_state="closed") as call:
        try:
            got = conn.execute(
                queries["lock_and_insert_delivery"],
                {**delivery.params, "key": delivery.lock_key,
                 "message_id_header": delivery.message_id},
            ).fetchone()  # fmt: skip
        except BaseException:
            with contextlib.suppress(Exception):  # it may have been taken before the failure
                _release_lock(conn, delivery)
            raise
        if not got or not got["locked"]:
            raise TransientError(
                f"delivery to notification {delivery.notification_id} is being sent elsewhere"
            )
        try:
            if got["id"] is None:  # the row exists: an earlier attempt got this far
                claimed = _claim(conn, delivery)
                if isinstance(claimed, DeliveryOutcome):
                    return claimed
            else:
                claimed = (got, False)
            return _send(conn, settings, mailer, delivery, *claimed, call)
        finally:
            _release_lock(conn, delivery)


def _release_lock(conn, delivery: _Delivery) -> None:
    if delivery.locked:
        conn.execute(queries["release_delivery_lock"], {"key": delivery.lock_key})
        delivery.locked = False


def _claim(conn, delivery: _Delivery) -> tuple[dict, bool] | DeliveryOutcome:
    """Claim the delivery row ('sending'): (row, ambiguous), or the outcome when it was sent."""
    with conn.transaction():
        params = delivery.params
        row = conn.execute(
            queries["insert_delivery"], {**params, "message_id_header": delivery.message_id}
        ).fetchone()
        if row is not None:
            return row, False
        existing = conn.execute(queries["lock_delivery"], params).fetchone()
        if existing["status"] == "sent":
            ledger.complete(conn, delivery.job_id)
            return DeliveryOutcome("already_sent", message_id=delivery.message_id)
        ambiguous = existing["status"] == "sending"
        row = conn.execute(
            queries["delivery_attempt"], {"id": existing["id"], "ambiguous": ambiguous}
        ).fetchone()
        if ambiguous:
            logger.warning(
                "Delivery %d was left 'sending' by a worker that died; sending again with "
                "the same Message-ID (ambiguous)",
                existing["id"],
            )
        return row, ambiguous


def _send(
    conn, settings, mailer, delivery: _Delivery, row: dict, ambiguous: bool, call: Call
) -> DeliveryOutcome:
    try:
        with call.made():  # what the smtp breaker learns from this send
            mailer.send(
                delivery.message,
                from_addr=envelope_address(settings.mail_from),
                to_addrs=[envelope_address(delivery.recipient)],
            )
    except TransientError as exc:
        conn.execute(queries["delivery_released"], {"id": row["id"], "error": str(exc)})
        raise
    except PermanentError as exc:
        conn.execute(queries["delivery_failed"], {"id": row["id"], "error": str(exc)})
        raise
    # Sent, the job complete and (admitted while closed) the breaker's success: one
    # statement, so one transaction (the connection is in autocommit); it also releases
    # the delivery's advisory lock, one round trip fewer.
    fold_breaker = call.breaker is not None and not call.probe
    conn.execute(
        queries["delivery_sent_job_complete"],
        {"delivery_id": row["id"], "job_id": delivery.job_id, "note": delivery.note,
         "breaker": call.breaker if fold_breaker else None, "key": delivery.lock_key},
    )  # fmt: skip
    delivery.locked = False
    call.success_recorded = fold_breaker
    return DeliveryOutcome("sent", ambiguous=ambiguous, message_id=delivery.message_id)


@functools.lru_cache(maxsize=4096)  # the same few addresses, parsed once each
def envelope_address(address: str) -> str:
    """The bare address for the SMTP envelope (``Ops <ops@x>`` -> ``ops@x``)."""
    return parseaddr(address)[1]
