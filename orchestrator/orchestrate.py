"""The orchestrator: claim a batch of changes, route them, write their jobs, publish.

One batch at a time across every process and machine (a transaction-level
advisory lock); the jobs of a batch are written in the batch's transaction and
published after it commits (the ledger is the outbox). While changes remain it
keeps draining, bounded by `max_runtime_seconds`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.config import Settings
from herald.db import DictConnection
from herald.ledger import JobRef, NewJob, Publish
from herald.sql import queries
from orchestrator.claim import lock_batch
from orchestrator.coverage import warn_gaps
from orchestrator.debounce import write_debounced
from orchestrator.recipients import resolve
from orchestrator.routing import Outcome, Planned, digest_items, first_jobs, plan

logger = logging.getLogger(__name__)

#: Advisory-lock key for "a batch is being orchestrated" ("heraldob" in ASCII).
ORCHESTRATOR_LOCK_KEY = 0x68657261_6C646F62


@dataclass
class RunReport:
    """What one orchestrator run did; also written to herald.orchestrator_runs."""

    batches: int = 0
    claimed: int = 0
    routed: int = 0
    skipped: int = 0
    failed: int = 0
    published: int = 0
    republished: int = 0
    locked_out: bool = False
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int | bool]:
        """The run's figures, as `herald orchestrate` prints them and `finish_run` stores them."""
        return {
            "claimed": self.claimed,
            "routed": self.routed,
            "skipped": self.skipped,
            "failed": self.failed,
            "published": self.published,
            "republished": self.republished,
            "batches": self.batches,
            "locked_out": self.locked_out,
        }


def write_batch(
    conn: DictConnection,
    planned: list[Planned],
    settings: Settings,
    *,
    outcomes: list[Outcome] | None,
) -> list[JobRef]:
    """Write a batch: its notifications, their first jobs and (when given) every change's
    claim and outcome, in one statement (`write_batch`).

    Debounced routes are written apart: their jobs are published later, when due.
    """
    debounced = [p for p in planned if p.route.debounce_seconds > 0]
    if debounced:
        write_debounced(conn, debounced, settings)
        planned = [p for p in planned if p.route.debounce_seconds == 0]
    if not planned and outcomes is None:
        return []
    ids = (
        [r["id"] for r in conn.execute(queries["next_notification_ids"], {"n": len(planned)})]
        if planned
        else []
    )
    jobs: list[NewJob] = []
    items: list[dict[str, object]] = []  # a digest route's notifications wait for the digest
    for nid, p in zip(ids, planned, strict=True):
        jobs.extend(first_jobs(nid, p, settings))
        items.extend(digest_items(nid, p))
    notifications = [
        {
            "id": nid,
            "route": p.route.name,
            "table_name": p.change.table_name,
            "row_pk": p.change.row_pk,
            "change_id": p.change.id,
            "recipients": list(p.to),
            "ai": p.route.ai and settings.ai.enabled,
            "on_ai_failure": p.route.on_ai_failure,
            "priority": p.route.priority,
        }
        for nid, p in zip(ids, planned, strict=True)
    ]
    rows = conn.execute(
        queries["write_batch"],
        {
            "outcomes": Jsonb([{"id": i, "outcome": o, "error": e} for i, o, e in outcomes or ()]),
            "notifications": Jsonb(notifications),
            "digest_items": Jsonb(items),
            "jobs": Jsonb([
                {"actor": j.actor, "queue": ledger.ACTOR_QUEUES[j.actor],
                 "notification_id": j.notification_id, "change_id": j.change_id,
                 "recipient": j.recipient, "unique_key": j.unique_key,
                 "priority": ledger.PRIORITIES[j.priority]}
                for j in jobs
            ]),
        },
    ).fetchall()  # fmt: skip
    return ledger.job_refs(rows)


def run_batch(
    pool: ConnectionPool,
    settings: Settings,
    publish: Publish,
    report: RunReport,
    publisher: _Overlapped | None = None,
) -> int:
    """Claim, route and write one batch; publish after commit (on `publisher`'s thread
    while the next batch is claimed, when given).

    Returns how many changes were claimed, or -1 when another orchestrator holds the lock.
    """
    with db.connection(pool) as conn:
        with conn.transaction():
            locked = conn.execute(
                queries["try_orchestrator_lock"], {"key": ORCHESTRATOR_LOCK_KEY}
            ).fetchone()
            if not locked or not locked["locked"]:
                return -1
            # Lock the batch's changes, route them, then one statement writes the claims,
            # outcomes, notifications and jobs (each change row is written once).
            changes = lock_batch(conn, settings.orchestrator.batch_size, settings.limits)
            planned, outcomes = plan(changes, settings)
            # Row addresses added, muted recipients left out (and why, in the ledger).
            planned, outcomes = resolve(conn, planned, outcomes, settings, datetime.now(UTC))
            refs = write_batch(conn, planned, settings, outcomes=outcomes) if changes else []
        # Committed: the jobs exist. Publishing may fail; a later run republishes them.
        if publisher is None:
            _publish_batch(conn, refs, publish, report)
    if publisher is not None and refs:
        publisher.submit(refs)
    report.batches += 1 if changes else 0
    report.claimed += len(changes)
    report.routed += sum(1 for _, o, _ in outcomes if o == "routed")
    report.skipped += sum(1 for _, o, _ in outcomes if o == "skipped")
    report.failed += sum(1 for _, o, _ in outcomes if o == "failed")
    return len(changes)


def _publish_batch(
    conn: psycopg.Connection[Any], refs: Sequence[JobRef], publish: Publish, report: RunReport
) -> None:
    try:
        report.published += ledger.publish_and_mark(conn, refs, publish)
    except Exception as exc:  # noqa: BLE001 - any publish failure leaves the outbox to retry
        logger.error("Publishing %d jobs failed (%s); they will be republished", len(refs), exc)
        report.errors.append(f"publish: {exc}")


class _Overlapped:
    """Publishes each committed batch on a thread of its own while the next batch is
    claimed and written (waiting for RabbitMQ's confirms was about a quarter of a run).

    At most one batch is publishing at a time: `submit` first waits for the previous one.
    Batches are still claimed and written one at a time (the advisory lock), and a batch's
    jobs are committed before they are published, so the outbox is unchanged: what a crash
    leaves unpublished, a later run publishes.
    """

    def __init__(self, pool: ConnectionPool, publish: Publish, report: RunReport) -> None:
        self.pool, self.publish, self.report = pool, publish, report
        self._pending: Future[None] | None = None

    def submit(self, refs: Sequence[JobRef]) -> None:
        self.wait()
        self._pending = _publish_executor().submit(self._run, refs)

    def _run(self, refs: Sequence[JobRef]) -> None:
        try:
            with db.connection(self.pool) as conn:
                _publish_batch(conn, refs, self.publish, self.report)
        except Exception as exc:  # noqa: BLE001 - e.g. no connection for mark_published
            logger.error("Publishing %d jobs failed (%s); they will be republished", len(refs), exc)
            self.report.errors.append(f"publish: {exc}")

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None


_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def _publish_executor() -> ThreadPoolExecutor:
    """One publishing thread per process (its RabbitMQ channel is reused across runs)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():  # not across a fork
            _executor = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="herald-publish"))
        return _executor[1]


def run_orchestrator(
    pool: ConnectionPool, settings: Settings, publish: Publish, *, max_runtime: float | None = None
) -> RunReport:
    """Drain the change log batch by batch, bounded in time; record the run."""
    report = RunReport()
    budget = settings.orchestrator.max_runtime_seconds if max_runtime is None else max_runtime
    deadline = time.monotonic() + budget
    with db.connection(pool) as conn:
        run = conn.execute(queries["start_run"]).fetchone()
        conn.commit()
    assert run is not None  # INSERT ... RETURNING of one row
    run_id = run["id"]
    warn_gaps(pool, settings)  # tracked tables with no route, routes on untracked tables
    status, error = "succeeded", None
    publisher = _Overlapped(pool, publish, report)
    try:
        with db.connection(pool) as conn:
            report.republished = ledger.republish_stale(
                conn, publish, grace_seconds=settings.orchestrator.republish_after_seconds
            )
        try:
            while time.monotonic() < deadline:
                claimed = run_batch(pool, settings, publish, report, publisher)
                if claimed < 0:
                    report.locked_out = True
                    status = "locked"
                    break
                if claimed < settings.orchestrator.batch_size:
                    break
        finally:
            publisher.wait()  # the last batch is published (or left to the outbox) first
        with db.connection(pool) as conn:
            report.published += ledger.publish_due(conn, publish)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if report.errors and status == "succeeded":
            status, error = "failed", "; ".join(report.errors)[:1000]
        with db.connection(pool) as conn:
            conn.execute(
                queries["finish_run"],
                {"id": run_id, "status": status, "error": error, **report.counts()},
            )
    return report
