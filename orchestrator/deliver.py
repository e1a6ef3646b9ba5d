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

import logging
from dataclasses import dataclass
from email.utils import parseaddr

from psycopg_pool import ConnectionPool

from orchestrator import ledger
from orchestrator.adapters.mail import Mailer
from orchestrator.breaker import Call, guarded
from orchestrator.config import Settings
from orchestrator.enrich import load_notification
from orchestrator.errors import PermanentError, TransientError
from orchestrator.pii import unalias
from orchestrator.render import ChangeView, build_message, message_id_for, render_notification
from orchestrator.sql import queries

logger = logging.getLogger(__name__)

SUMMARY_UNAVAILABLE = "Summary unavailable: the AI step failed, so this email shows the raw change."
SUMMARY_OFFLINE = "Offline summary: written by Herald without an AI model."


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # sent | already_sent | skipped
    ambiguous: bool = False
    message_id: str | None = None


def summary_for(summary_row: dict | None) -> tuple[str | None, str | None]:
    """(summary text with real values put back, note shown beside it)."""
    if summary_row is None:
        return None, None
    if summary_row["status"] == "unavailable":
        return None, SUMMARY_UNAVAILABLE
    text = unalias(summary_row["summary"] or "", summary_row["aliases"] or {})
    return text, SUMMARY_OFFLINE if summary_row["status"] == "offline" else None


def send_notification_email(
    pool: ConnectionPool, settings: Settings, mailer: Mailer, job_id: int
) -> DeliveryOutcome:
    """Render and send one job's email; idempotent across redeliveries and retries."""
    with pool.connection() as conn:
        job = conn.execute(queries["lock_job"], {"id": job_id}).fetchone()
        if job is None:
            raise PermanentError(f"job {job_id} does not exist")
        if job["status"] != "running":
            conn.rollback()
            return DeliveryOutcome("skipped")
        notification, changes = load_notification(conn, job["notification_id"])
        summary_row = conn.execute(queries["load_summary"], {"id": notification["id"]}).fetchone()
        conn.rollback()

        recipient = job["recipient"]
        message_id = message_id_for(notification["id"], recipient, settings.mail_domain)
        summary, note = summary_for(summary_row)
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
                )
                for c in changes
            ],
            summary=summary,
            summary_note=note,
            route=notification["route"],
        )
        message = build_message(
            rendered,
            mail_from=settings.mail_from,
            recipient=recipient,
            message_id=message_id,
            change_ids=[c.id for c in changes],
        )

        key = f"delivery:{notification['id']}:{recipient}"
        got = conn.execute(queries["try_delivery_lock"], {"key": key}).fetchone()
        conn.commit()
        if not got or not got["locked"]:
            raise TransientError(
                f"delivery to notification {notification['id']} is being sent elsewhere"
            )
        try:
            # Rate limit and circuit breaker (may raise Postponed: the job is deferred)
            # before the delivery row is claimed, so a deferral leaves nothing 'sending'.
            with guarded(pool, settings, "smtp") as call:
                return _claim_and_send(
                    conn, job_id, notification["id"], recipient, message_id, message,
                    settings, mailer, call,
                )
        finally:
            conn.rollback()
            conn.execute(queries["release_delivery_lock"], {"key": key})
            conn.commit()


def _claim_and_send(
    conn, job_id, notification_id, recipient, message_id, message, settings, mailer,
    call: Call | None = None,
):
    with conn.transaction():
        params = {"notification_id": notification_id, "recipient": recipient}
        row = conn.execute(
            queries["insert_delivery"], {**params, "message_id_header": message_id}
        ).fetchone()
        if row is None:
            existing = conn.execute(queries["lock_delivery"], params).fetchone()
            if existing["status"] == "sent":
                ledger.complete(conn, job_id)
                return DeliveryOutcome("already_sent", message_id=message_id)
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
        else:
            ambiguous = False
    try:
        with (call or Call()).made():  # what the smtp breaker learns from this send
            mailer.send(
                message,
                from_addr=_envelope_from(settings.mail_from),
                to_addrs=[parseaddr(recipient)[1]],
            )
    except TransientError as exc:
        with conn.transaction():
            conn.execute(queries["delivery_released"], {"id": row["id"], "error": str(exc)})
        raise
    except PermanentError as exc:
        with conn.transaction():
            conn.execute(queries["delivery_failed"], {"id": row["id"], "error": str(exc)})
        raise
    with conn.transaction():
        conn.execute(queries["delivery_sent"], {"id": row["id"]})
        ledger.complete(conn, job_id)
    return DeliveryOutcome("sent", ambiguous=ambiguous, message_id=message_id)


def _envelope_from(mail_from: str) -> str:
    return parseaddr(mail_from)[1]
