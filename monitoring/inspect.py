"""Looking inside the job ledger: the functions behind `herald jobs ...` (the figures of
`herald stats` are in `monitoring.stats`).

Plain functions over a psycopg connection whose rows are dicts (`herald.db.connect`).
Reads return dicts and lists ready to print or dump as JSON; the two writes (`retry_jobs`,
`cancel_job`) each run in `conn.transaction()` blocks, so give them a connection with no
transaction open (autocommit, as the CLI does) for each block to commit on its own.
All SQL is in `monitoring/sql/inspect.sql`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from herald.ledger import STATUSES, JobRef, Publish, publish_and_mark
from monitoring.sql import queries

#: Statuses a job can be retried from (it is not open and did not succeed).
RETRYABLE = ("failed", "canceled")
#: Statuses a job can be canceled from.
CANCELABLE = ("pending", "running")


class OperatorError(Exception):
    """A request the operator must change: the message says what and why."""


class JobNotFound(OperatorError, LookupError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id} in the ledger")
        self.job_id = job_id


class UnknownStatus(OperatorError, ValueError):
    def __init__(self, status: str) -> None:
        super().__init__(f"unknown status {status!r} (choose from {', '.join(STATUSES)})")
        self.status = status


class Refused(OperatorError):
    """The job is in a state the requested change does not apply to."""


def check_status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise UnknownStatus(status)
    return status


# -- reading -------------------------------------------------------------------------------


def list_jobs(
    conn: psycopg.Connection[Any],
    *,
    actor: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally only one actor's and/or one status."""
    check_status(status)
    if limit < 1:
        raise OperatorError(f"limit must be at least 1, not {limit}")
    params = {"actor": actor, "status": status, "limit": limit}
    return list(conn.execute(queries["list_jobs"], params).fetchall())


def show_job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """Everything about one job: its row, notification, summary outcome, delivery, siblings.

    The summary's text and aliases map are left out (the map holds the personal data the
    AI never saw); only its status, model and error are shown.
    """
    job = conn.execute(queries["get_job"], {"id": job_id}).fetchone()
    if job is None:
        raise JobNotFound(job_id)
    job = dict(job)
    job["message_id"] = str(job["message_id"])
    notification_id = job["notification_id"]
    notification = summary = delivery = None
    siblings: list[dict[str, Any]] = []
    if notification_id is not None:
        notification = conn.execute(queries["get_notification"], {"id": notification_id}).fetchone()
        summary = conn.execute(
            queries["get_summary_status"], {"notification_id": notification_id}
        ).fetchone()
        if job["recipient"] is not None:
            delivery = conn.execute(
                queries["get_delivery"],
                {"notification_id": notification_id, "recipient": job["recipient"]},
            ).fetchone()
        siblings = list(
            conn.execute(
                queries["sibling_jobs"], {"notification_id": notification_id, "id": job_id}
            ).fetchall()
        )
    return {
        "job": job,
        "notification": notification,
        "summary": summary,
        "delivery": delivery,
        "siblings": siblings,
    }


# -- retrying ------------------------------------------------------------------------------


@dataclass
class RetryResult:
    """What `retry_jobs` did: jobs reopened, how many messages went out, what it skipped."""

    retried: list[int] = field(default_factory=list)
    published: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    #: The broker took fewer messages than offered; the rest stay pending and unpublished,
    #: and the orchestrator's republisher sends them on a later run.
    publish_incomplete: bool = False
    #: `retry_batches` stopped at its `max_jobs` with more jobs still matching.
    more: bool = False

    @property
    def unpublished(self) -> int:
        return len(self.retried) - self.published


def _refusal(job_id: int, status: str) -> str:
    return {
        "complete": f"job {job_id} is complete: there is nothing to retry",
        "pending": f"job {job_id} is pending: it is already waiting to run",
        "running": f"job {job_id} is running: wait for it to complete or fail",
        "superseded": f"job {job_id} was superseded by a newer job: there is nothing to retry",
    }.get(status, f"job {job_id} is {status}: only failed or canceled jobs can be retried")


def _duplicate_reason(job_id: int, open_id: int, open_status: str) -> str:
    return f"job {job_id}: job {open_id} for the same work is already {open_status}"


def _reopen(conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[JobRef]:
    """Inside the caller's transaction, with the rows locked: back to pending. The caller
    publishes the refs after commit (the ledger is the outbox): a message published
    before it could reach a worker that still reads the job as failed and skips it."""
    rows = conn.execute(queries["reopen_jobs"], {"ids": list(ids)}).fetchall()
    return sorted(
        (
            JobRef(
                id=r["id"],
                message_id=str(r["message_id"]),
                actor=r["actor"],
                queue=r["queue"],
                priority=r["priority"],
            )
            for r in rows
        ),
        key=lambda ref: ref.id,
    )


def retry_jobs(
    conn: psycopg.Connection[Any],
    job_ids: Sequence[int] = (),
    *,
    failed: bool = False,
    publish: Publish,
    batch_size: int = 500,
) -> RetryResult:
    """Put failed (or canceled) jobs back to pending and publish their messages again.

    Either name the jobs (`job_ids`: all of them are checked first, and nothing changes if
    one is unknown or cannot be retried) or ask for every failed job (`failed=True`:
    batch by batch, each its own transaction; a job whose work another open job already
    does is skipped). Attempts and last_error are kept. A job the broker did not take stays
    pending and unpublished: the orchestrator publishes it again later (the ledger is the
    outbox); with `failed=True` no further batch is started after that happens.
    """
    if bool(job_ids) == failed:
        raise ValueError("retry_jobs: pass job ids or failed=True (exactly one)")
    result = RetryResult()
    if job_ids:
        ids = sorted(set(job_ids))
        with conn.transaction():
            rows = {r["id"]: r for r in conn.execute(queries["lock_jobs"], {"ids": ids}).fetchall()}
            for job_id in ids:
                if job_id not in rows:
                    raise JobNotFound(job_id)
                if rows[job_id]["status"] not in RETRYABLE:
                    raise Refused(_refusal(job_id, rows[job_id]["status"]))
            seen: dict[tuple[str, str], int] = {}
            for job_id in ids:
                key = (rows[job_id]["actor"], rows[job_id]["unique_key"])
                if key[1] is not None and key in seen:
                    raise Refused(
                        f"jobs {seen[key]} and {job_id} do the same work: retry only one of them"
                    )
                seen[key] = job_id
            dup = conn.execute(queries["open_duplicates"], {"ids": ids}).fetchone()
            if dup is not None:
                raise Refused(_duplicate_reason(dup["job_id"], dup["open_id"], dup["open_status"]))
            refs = _reopen(conn, ids)
        result.retried = [ref.id for ref in refs]
        result.published = publish_and_mark(conn, refs, publish)
        result.publish_incomplete = result.published < len(result.retried)
        return result

    return retry_batches(
        conn,
        lambda after, limit: conn.execute(
            queries["lock_failed_batch"], {"after": after, "limit": limit}
        ).fetchall(),
        publish=publish,
        batch_size=batch_size,
    )


#: Locks the next batch of jobs to retry after a job id (rows with id, actor, unique_key),
#: in id order, inside the caller's transaction; SKIP LOCKED so others' jobs are passed by.
LockBatch = Callable[[int, int], Sequence[dict[str, Any]]]


def retry_batches(
    conn: psycopg.Connection[Any],
    lock_batch: LockBatch,
    *,
    publish: Publish,
    batch_size: int = 500,
    max_jobs: int | None = None,
) -> RetryResult:
    """Reopen and publish, batch by batch (each its own transaction), the jobs `lock_batch`
    hands out: every failed job (`retry_jobs(failed=True)`) or those matching the HTTP API's
    filters. A job whose work another open job already does is skipped, and of two for the
    same work only the newest is reopened. Stops after `max_jobs` jobs were looked at (then
    `more` is set), or when the broker took fewer messages than offered.
    """
    result = RetryResult()
    after, seen = 0, 0
    while True:
        limit = batch_size if max_jobs is None else min(batch_size, max_jobs - seen)
        if limit <= 0:
            result.more = bool(lock_batch(after, 1))
            break
        with conn.transaction():
            batch = list(lock_batch(after, limit))
            if not batch:
                break
            after, seen = batch[-1]["id"], seen + len(batch)
            skipped: dict[int, str] = {}
            for dup in conn.execute(
                queries["open_duplicates"], {"ids": [r["id"] for r in batch]}
            ).fetchall():
                skipped.setdefault(
                    dup["job_id"],
                    _duplicate_reason(dup["job_id"], dup["open_id"], dup["open_status"]),
                )
            # Two jobs for the same work: reopen the newest only.
            newest: dict[tuple[str, str], int] = {}
            for r in batch:
                if r["id"] in skipped or r["unique_key"] is None:
                    continue
                key = (r["actor"], r["unique_key"])
                if key in newest:
                    skipped[newest[key]] = (
                        f"job {newest[key]}: newer job {r['id']} "
                        "for the same work is retried instead"
                    )
                newest[key] = r["id"]
            todo = [r["id"] for r in batch if r["id"] not in skipped]
            refs = _reopen(conn, todo) if todo else []
        retried = [ref.id for ref in refs]
        published = publish_and_mark(conn, refs, publish)
        result.retried += retried
        result.published += published
        result.skipped += sorted(skipped.items())
        if published < len(retried):
            result.publish_incomplete = True
            break
    return result


# -- canceling -----------------------------------------------------------------------------


def cancel_job(conn: psycopg.Connection[Any], job_id: int, *, only_pending: bool = False) -> str:
    """Cancel an open job; returns the status it had (`pending` or `running`).

    `only_pending` (the HTTP API): a running job is refused, its attempt left to finish.

    A pending job's message does nothing when it arrives (the ledger middleware skips jobs
    that are not open). A running job's current attempt may still finish (its effect, an
    email sent, stands), but the ledger keeps it canceled and its later retries are skipped.
    """
    with conn.transaction():
        row = conn.execute(queries["lock_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        status = row["status"]
        if only_pending and status == "running":
            raise Refused(
                f"job {job_id} is running: its attempt may already be sending; "
                "wait for it to finish (or cancel it with `herald jobs cancel`)"
            )
        if status not in CANCELABLE:
            raise Refused(
                {
                    "complete": f"job {job_id} is complete: too late to cancel it",
                    "failed": f"job {job_id} has failed: it will not run again unless retried",
                    "canceled": f"job {job_id} is already canceled",
                    "superseded": f"job {job_id} was superseded by a newer job: nothing to cancel",
                }.get(
                    status,
                    f"job {job_id} is {status}: only pending or running jobs can be canceled",
                )
            )
        conn.execute(queries["cancel_job"], {"id": job_id})
    return str(status)
