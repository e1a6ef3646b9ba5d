"""The job ledger: one row per message the pipeline sends, kept true by a middleware.

The ledger is also the outbox. A step writes the next job's row in the same
transaction as its own result; the row is published after commit, and a row
still unpublished after a grace period is published again by a later run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from herald.changes import Change
from herald.db import DictConnection, DictRow
from herald.sql import queries

#: Every actor Herald runs -> its queue: the one definition (the actors are declared on
#: these queues, metrics are labelled with them). A batch actor uses its jobs' queue.
QUEUES = {
    "orchestrate": "orchestrate",
    "enrich": "enrich",
    "send_email": "email",
    "sweep": "maintenance",
    "purge": "maintenance",
    "digest_tick": "maintenance",
    "send_digest": "email",
}

#: Actor name -> queue name, for the actors that have ledger rows.
ACTOR_QUEUES = {actor: QUEUES[actor] for actor in ("enrich", "send_email", "send_digest")}

#: Actor name -> the actor that runs a batch of its jobs in one message (actors/email.py,
#: actors/enrich_batch.py).
BATCH_ACTORS = {"send_email": "send_emails", "enrich": "enrich_batch"}

#: Route priority -> RabbitMQ message priority (queues are declared with x-max-priority 10).
PRIORITIES = {"urgent": 9, "normal": 5, "low": 1}

#: The statuses a job can have. pending and running are "open".
STATUSES = ("pending", "running", "complete", "failed", "canceled", "superseded")
OPEN_STATUSES = ("pending", "running")


@dataclass(frozen=True)
class NewJob:
    """A job to write: the actor to run, what it is about, and its uniqueness key."""

    actor: str
    notification_id: int
    change_id: int | None = None
    recipient: str | None = None
    priority: str = "normal"

    @property
    def unique_key(self) -> str:
        key = f"{self.actor}:{self.notification_id}"
        return f"{key}:{self.recipient}" if self.recipient else key


@dataclass(frozen=True)
class JobRef:
    """What the publisher needs to send a job's message (ids only, nothing personal)."""

    id: int
    message_id: str
    actor: str
    queue: str
    priority: int


#: Publishes messages for jobs, returns the ids it published (stops at the first failure).
Publish = Callable[[Sequence[JobRef]], Sequence[int]]


def job_ref(row: DictRow) -> JobRef:
    return JobRef(
        id=row["id"],
        message_id=str(row["message_id"]),
        actor=row["actor"],
        queue=row["queue"],
        priority=row["priority"],
    )


def write_jobs(conn: DictConnection, jobs: Sequence[NewJob]) -> list[JobRef]:
    """Insert ledger rows in one statement; an already-open duplicate is not written."""
    if not jobs:
        return []
    rows = conn.execute(queries["insert_jobs"], job_params(jobs)).fetchall()
    return job_refs(rows)


def job_params(jobs: Sequence[NewJob]) -> dict[str, list]:
    """The arrays `insert_jobs` and the orchestrator's `write_batch` insert."""
    return {
        "message_ids": [uuid.uuid4() for _ in jobs],
        "actors": [j.actor for j in jobs],
        "queues": [ACTOR_QUEUES[j.actor] for j in jobs],
        "notification_ids": [j.notification_id for j in jobs],
        "change_ids": [j.change_id for j in jobs],
        "recipients": [j.recipient for j in jobs],
        "unique_keys": [j.unique_key for j in jobs],
        "priorities": [PRIORITIES[j.priority] for j in jobs],
    }


def job_refs(rows: Sequence[DictRow]) -> list[JobRef]:
    return sorted((job_ref(r) for r in rows), key=lambda r: r.id)


def publish_and_mark(
    conn: psycopg.Connection[Any], refs: Sequence[JobRef], publish: Publish
) -> int:
    """Publish messages for committed jobs and record when; return how many went out."""
    if not refs:
        return 0
    published = list(publish(refs))
    if published:
        conn.execute(queries["mark_published"], {"ids": published})
    return len(published)


def republish_stale(
    conn: DictConnection, publish: Publish, *, grace_seconds: float, limit: int = 1000
) -> int:
    """Publish jobs written but never published (a crash between commit and publish)."""
    with conn.transaction():
        rows = conn.execute(
            queries["claim_unpublished"], {"grace_seconds": grace_seconds, "limit": limit}
        ).fetchall()
        return publish_and_mark(conn, [job_ref(r) for r in rows], publish)


def publish_due(conn: DictConnection, publish: Publish, *, limit: int = 1000) -> int:
    """Publish debounced jobs whose window has closed (their due time lives here, not in
    RabbitMQ, whose delayed messages wait unacked in worker memory)."""
    with conn.transaction():
        rows = conn.execute(queries["claim_due"], {"limit": limit}).fetchall()
        return publish_and_mark(conn, [job_ref(r) for r in rows], publish)


# -- one attempt's life ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobContext:
    """One running attempt of a job, as `start_job` started it: what its step needs, read
    in the statement that marked it running (procrastinate's `JobContext` is the model).

    The actor passes it to its stage's service; the service reads nothing more before its
    own work, and says in its outcome whether it completed the job in its own statement.
    """

    job_id: int
    job: dict[str, Any]
    notification: dict[str, Any] | None
    changes: list[Change]
    summary: dict[str, Any] | None
    breakers: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> JobRef:
        """The job's ref, to publish it again (its own message id and priority)."""
        return JobRef(self.job_id, self.job["message_id"], self.job["actor"],
                      ACTOR_QUEUES[self.job["actor"]], self.job["priority"])  # fmt: skip


def start_job(conn: DictConnection, job_id: int) -> tuple[JobContext | None, str | None]:
    """Mark a job running and read what its step needs, in one statement: (its context,
    None) when it runs, else (None, the status found; None for a job the ledger lacks).

    Only pending or running (redelivered after a crash) jobs run; canceled, superseded,
    complete and failed ones are not run again.
    """
    started, not_started = start_many(conn, [job_id])
    if started:
        return started[0], None
    return None, not_started.get(job_id)


def start_many(
    conn: DictConnection, job_ids: Sequence[int]
) -> tuple[list[JobContext], dict[int, str]]:
    """Start a batch of jobs in one statement: (the contexts started, in id order; the
    status of each job that must not run). Unknown ids are in neither."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(queries["job_start_load"], {"ids": list(job_ids)}).fetchall()
        at = _Positions({column.name: i for i, column in enumerate(cur.description or ())})
    started: list[JobContext] = []
    not_started: dict[int, str] = {}
    for job_rows in _by_job(rows, at.job_id):
        first = job_rows[0]
        if first[at.started]:
            started.append(_context(job_rows, at))
        else:
            not_started[first[at.job_id]] = first[at.found_status]
    return started, not_started


class _Positions:
    """Where each of `job_start_load`'s columns is in a row: rows come as tuples, read by
    position (a dict per row, and keys built per job, were a worker's hot spot)."""

    def __init__(self, index: dict[str, int]) -> None:
        self.job_id, self.started = index["job_id"], index["started"]
        self.found_status, self.n_id, self.sm_status = (
            index["found_status"], index["n_id"], index["sm_status"])  # fmt: skip
        self.breakers, self.change_id = index["breakers"], index["id"]
        self.job = tuple((key, index[column]) for key, column in _JOB_COLUMNS)
        self.notification = tuple((key, index[f"n_{key}"]) for key in _NOTIFICATION_KEYS)
        self.summary = tuple((key, index[f"sm_{key}"]) for key in _SUMMARY_KEYS)
        self.change = tuple(index[key] for key in _CHANGE_COLUMNS)


#: JobContext.job's keys -> job_start_load's columns.
_JOB_COLUMNS = (
    ("id", "job_id"), ("actor", "job_actor"), ("notification_id", "notification_id"),
    ("change_id", "job_change_id"), ("recipient", "recipient"),
    ("message_id", "job_message_id"), ("priority", "job_priority"),
    ("table_columns", "table_columns"),  # the email lists columns in this order
)  # fmt: skip
_NOTIFICATION_KEYS = ("id", "route", "table_name", "row_pk", "change_ids", "recipients", "ai",
                      "on_ai_failure", "priority", "created_at", "due_for_seconds")  # fmt: skip
_SUMMARY_KEYS = ("status", "summary", "model", "aliases", "error")
#: Change's fields, in order.
_CHANGE_COLUMNS = ("id", "table_name", "operation", "row_pk", "old_row", "new_row", "changed_at")


def _by_job(rows: Sequence[tuple[Any, ...]], job_id: int) -> list[list[tuple[Any, ...]]]:
    """`job_start_load`'s rows (in job id order) split into one list per job."""
    groups: list[list[tuple[Any, ...]]] = []
    for row in rows:
        if groups and groups[-1][0][job_id] == row[job_id]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _context(rows: Sequence[tuple[Any, ...]], at: _Positions) -> JobContext:
    first = rows[0]
    job = {key: first[i] for key, i in at.job}
    job["status"] = "running"
    notification = None
    if first[at.n_id] is not None:
        notification = {key: first[i] for key, i in at.notification}
    summary = None
    if first[at.sm_status] is not None:
        summary = {key: first[i] for key, i in at.summary}
    change_id, fields = at.change_id, at.change
    changes = [Change(*[r[i] for i in fields]) for r in rows if r[change_id] is not None]
    return JobContext(job["id"], job, notification, changes, summary, first[at.breakers] or {})


def complete(conn: psycopg.Connection[Any], job_id: int) -> None:
    conn.execute(queries["job_complete"], {"id": job_id})


def will_retry(conn: psycopg.Connection[Any], job_id: int, error: str) -> None:
    conn.execute(queries["job_retrying"], {"id": job_id, "error": error})


def delayed(conn: psycopg.Connection[Any], job_id: int, delay_seconds: float) -> None:
    conn.execute(queries["job_delayed"], {"id": job_id, "delay_seconds": delay_seconds})


def deferred(conn: psycopg.Connection[Any], job_id: int, reason: str) -> None:
    """Put off, not failed: pending again, the attempt given back, a deferral counted."""
    conn.execute(queries["job_deferred"], {"id": job_id, "reason": reason})


def fail(conn: psycopg.Connection[Any], job_id: int, error: str) -> None:
    conn.execute(queries["job_failed"], {"id": job_id, "error": error})


def hand_back(conn: DictConnection, job_ids: Sequence[int], reason: str) -> list[JobRef]:
    """Jobs started but not tried: pending again, their attempt given back; their refs,
    for publishing them again."""
    if not job_ids:
        return []
    rows = conn.execute(
        queries["jobs_handed_back"], {"ids": list(job_ids), "reason": reason}
    ).fetchall()
    return job_refs(rows)


#: Longest error text kept in the ledger (a traceback is in the worker's log, not here).
MAX_ERROR_CHARS = 2000


def describe(exception: BaseException) -> str:
    """An exception as the ledger's `last_error` keeps it: type and message, bounded."""
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
