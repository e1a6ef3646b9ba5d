"""The job ledger: one row per message the pipeline sends, kept true by a middleware.

The ledger is also the outbox. A step writes the next job's row in the same
transaction as its own result; the row is published after commit, and a row
still unpublished after a grace period is published again by a later run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from orchestrator.sql import queries

#: Actor name -> queue name, for every actor that has ledger rows.
ACTOR_QUEUES = {"enrich": "enrich", "send_email": "email"}

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


def job_ref(row: dict) -> JobRef:
    return JobRef(
        id=row["id"],
        message_id=str(row["message_id"]),
        actor=row["actor"],
        queue=row["queue"],
        priority=row["priority"],
    )


def write_jobs(conn: psycopg.Connection, jobs: Sequence[NewJob]) -> list[JobRef]:
    """Insert ledger rows in one statement; an already-open duplicate is not written."""
    if not jobs:
        return []
    rows = conn.execute(
        queries["insert_jobs"],
        {
            "message_ids": [uuid.uuid4() for _ in jobs],
            "actors": [j.actor for j in jobs],
            "queues": [ACTOR_QUEUES[j.actor] for j in jobs],
            "notification_ids": [j.notification_id for j in jobs],
            "change_ids": [j.change_id for j in jobs],
            "recipients": [j.recipient for j in jobs],
            "unique_keys": [j.unique_key for j in jobs],
            "priorities": [PRIORITIES[j.priority] for j in jobs],
        },
    ).fetchall()
    return sorted((job_ref(r) for r in rows), key=lambda r: r.id)


def publish_and_mark(conn: psycopg.Connection, refs: Sequence[JobRef], publish: Publish) -> int:
    """Publish messages for committed jobs and record when; return how many went out."""
    if not refs:
        return 0
    published = list(publish(refs))
    if published:
        conn.execute(queries["mark_published"], {"ids": published})
    return len(published)


def republish_stale(
    conn: psycopg.Connection, publish: Publish, *, grace_seconds: float, limit: int = 1000
) -> int:
    """Publish jobs written but never published (a crash between commit and publish)."""
    with conn.transaction():
        rows = conn.execute(
            queries["claim_unpublished"], {"grace_seconds": grace_seconds, "limit": limit}
        ).fetchall()
        return publish_and_mark(conn, [job_ref(r) for r in rows], publish)


def publish_due(conn: psycopg.Connection, publish: Publish, *, limit: int = 1000) -> int:
    """Publish debounced jobs whose window has closed (their due time lives here, not in
    RabbitMQ, whose delayed messages wait unacked in worker memory)."""
    with conn.transaction():
        rows = conn.execute(queries["claim_due"], {"limit": limit}).fetchall()
        return publish_and_mark(conn, [job_ref(r) for r in rows], publish)


# -- the middleware's side: one attempt's life ----------------------------------------------


def start_attempt(conn: psycopg.Connection, job_id: int) -> tuple[bool, str | None]:
    """Mark a job running. Returns (run it?, status found when it must not run)."""
    row = conn.execute(queries["job_start"], {"id": job_id}).fetchone()
    if row:
        return True, None
    found = conn.execute(queries["job_status"], {"id": job_id}).fetchone()
    return False, (found["status"] if found else None)


def complete(conn: psycopg.Connection, job_id: int) -> None:
    conn.execute(queries["job_complete"], {"id": job_id})


def will_retry(conn: psycopg.Connection, job_id: int, error: str) -> None:
    conn.execute(queries["job_retrying"], {"id": job_id, "error": error})


def delayed(conn: psycopg.Connection, job_id: int, delay_seconds: float) -> None:
    conn.execute(queries["job_delayed"], {"id": job_id, "delay_seconds": delay_seconds})


def fail(conn: psycopg.Connection, job_id: int, error: str) -> None:
    conn.execute(queries["job_failed"], {"id": job_id, "error": error})
