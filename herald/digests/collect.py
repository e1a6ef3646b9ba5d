"""The digest tick: every minute (UTC), claim the schedules that are due and write one
send_digest job per recipient and period into the ledger.

In one transaction per batch of due schedules (`FOR UPDATE SKIP LOCKED`, so two
schedulers at once never claim one schedule twice):

- the period is the schedule's last due instant at or before now: a scheduler that was
  down for days claims one period covering everything since the previous digest, not one
  per missed period;
- a run row unique on (schedule, period end) is inserted, the waiting items from before
  the period's end are given to it, and the schedule's cursor and next due time advance;
- a period with nothing new is `empty` (no email; the schedule still advances), one
  whose recipient is muted for the route is `muted`; the others get a send_digest job,
  with the digest email's Message-ID derived from the run's key.

Jobs are published after commit; one left unpublished (a crash in between) is published
again by the sweeper, and sent once: the run row, not the message, is what is sent.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.config import Settings
from herald.db import DictConnection
from herald.digests import store
from herald.ledger import PRIORITIES, JobRef, Publish
from herald.recipients import add_counters
from herald.schedules import ScheduleError, latest_due, next_due, parse_schedule, zone
from herald.sql import queries

logger = logging.getLogger(__name__)

#: Schedules claimed per transaction, and the longest a tick keeps claiming.
BATCH_SIZE = 200
MAX_RUNTIME_SECONDS = 40.0
#: The ledger counters of digests skipped (by reason) and sent, and of items per digest.
DIGESTS_SKIPPED = "digests_skipped"
DIGESTS_SENT = "digests_sent"
DIGEST_ITEMS = "digest_items"
#: Upper bounds of the items-per-digest histogram (the last is +Inf).
ITEM_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf"))


def bucket_label(bound: float) -> str:
    """A bucket's label in herald.counters (`le=20`, `le=+Inf`), as Prometheus writes it."""
    return "le=+Inf" if bound == float("inf") else f"le={bound:g}"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickReport:
    """What one tick did."""

    created: int = 0
    recomputed: int = 0
    claimed: int = 0
    jobs: int = 0
    empty: int = 0
    muted: int = 0
    published: int = 0
    errors: list[str] = field(default_factory=list)


def digest_message_id(schedule_id: int, period_end: datetime, recipient: str, domain: str) -> str:
    """The digest email's Message-ID, from the run's key (schedule, period): the same on
    every attempt, so a resend after a crash is recognisable."""
    stamp = period_end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(recipient.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<herald.d{int(schedule_id)}.{stamp}.{digest}@{domain}>"


def run_tick(
    pool: ConnectionPool,
    settings: Settings,
    publish: Publish,
    *,
    now: Callable[[], datetime] = utc_now,
    batch_size: int = BATCH_SIZE,
    max_runtime: float = MAX_RUNTIME_SECONDS,
) -> TickReport:
    """One tick at `now()` (read once): new schedules, recomputed ones, then the due ones
    claimed batch by batch and their jobs published after each commit."""
    clock = now()
    report = TickReport()
    with db.transaction(pool) as conn:
        report.created = store.ensure_schedules(conn, settings, clock)
        report.recomputed = store.reconcile(conn, settings, clock)
    deadline = time.monotonic() + max_runtime
    while time.monotonic() < deadline:
        with db.connection(pool) as conn:
            with conn.transaction():
                claimed, refs = claim_batch(conn, settings, clock, batch_size, report)
            try:
                report.published += ledger.publish_and_mark(conn, refs, publish)
            except Exception as exc:  # noqa: BLE001 - the outbox (the sweeper) publishes them
                logger.error(
                    "Publishing %d digest jobs failed (%s); the sweeper will", len(refs), exc
                )
                report.errors.append(f"publish: {exc}")
        if claimed < batch_size:
            break
    return report


def claim_batch(
    conn: DictConnection, settings: Settings, clock: datetime, limit: int, report: TickReport
) -> tuple[int, list[JobRef]]:
    """Claim up to `limit` due schedules in the caller's transaction: (how many, the jobs
    written)."""
    due = conn.execute(queries["digest_claim_due"], {"now": clock, "limit": limit}).fetchall()
    if not due:
        return 0, []
    claims = [c for c in (_claim(row, clock) for row in due) if c is not None]
    rows = conn.execute(
        queries["digest_open_runs"], {"claims": Jsonb(claims), "now": clock}
    ).fetchall()
    decided = [_decide(row, settings) for row in rows]
    outcomes = Counter(d["status"] for d in decided)
    refs = ledger.job_refs(
        conn.execute(
            queries["digest_finish_runs"],
            {"runs": Jsonb(decided), "queue": ledger.ACTOR_QUEUES["send_digest"]},
        ).fetchall()
    ) if decided else []  # fmt: skip
    add_counters(conn, {(DIGESTS_SKIPPED, "empty"): outcomes["empty"],
                        (DIGESTS_SKIPPED, "muted"): outcomes["muted"]})  # fmt: skip
    report.claimed += len(due)
    report.jobs += len(refs)
    report.empty += outcomes["empty"]
    report.muted += outcomes["muted"]
    return len(due), refs


def _claim(row: dict[str, Any], clock: datetime) -> dict[str, Any] | None:
    """The period a due schedule's run covers: up to its last due instant at or before
    `clock` (never before the due time stored), and its next due time after `clock`."""
    try:
        schedule, tz = parse_schedule(row["schedule"]), zone(row["timezone"])
    except ScheduleError as exc:  # a timezone the tz database no longer knows
        logger.error("Digest schedule %d cannot be computed: %s", row["id"], exc)
        return None
    period_end = max(row["next_due_at"], latest_due(schedule, tz, clock))
    return {
        "schedule_id": row["id"],
        "route": row["route"],
        "recipient": row["recipient"],
        "period_start": row["cursor_at"].isoformat(),
        "period_end": period_end.isoformat(),
        "next_due_at": next_due(schedule, tz, max(clock, period_end)).isoformat(),
        "operations": row["operations"],
        "tables": row["tables"],
    }


def _decide(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A run's outcome: muted, empty, or pending with the job that will send it."""
    route = store.digest_route(settings, row["route"])
    status = "muted" if row["muted"] else "empty" if row["items"] == 0 else "pending"
    message_id = digest_message_id(
        row["schedule_id"], row["period_end"], row["recipient"], settings.mail_domain
    )
    return {
        "run_id": row["run_id"],
        "status": status,
        "items": row["items"],
        "message_id": str(uuid.uuid4()),
        "recipient": row["recipient"],
        "unique_key": f"send_digest:{row['run_id']}",
        "priority": PRIORITIES[route.priority if route else "normal"],
        "message_id_header": message_id,
    }
