"""The job ledger as the HTTP API reads it: filtered pages, counts, one job, a change's
trace, a change entered by hand, health figures.

Plain functions over a psycopg connection with dict rows, like `monitoring.inspect`
(whose retry and cancel they reuse); the web layer (herald/web/) calls these and never
runs SQL itself. All SQL is in `monitoring/sql/api.sql`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from herald.breaker import breaker_states
from herald.ledger import STATUSES, Publish
from monitoring import inspect
from monitoring.inspect import JobNotFound, OperatorError, RetryResult
from monitoring.sql import api_queries as queries
from monitoring.stats import stats as ledger_stats

#: Free text (`q`) looks at the newest this many jobs only (Oban Web's choice too): the
#: ILIKE has no index to use, and a bounded scan keeps every request fast.
Q_WINDOW = 50_000
#: Up to this many jobs in the ledger, counts per status are exact; past it, the planner
#: estimates them (an exact count of a million rows per request is what made the anchors'
#: UIs slow: Oban Web #52, bull-board with ~1M jobs).
SMALL_LEDGER = 100_000
#: A bulk retry reopens at most this many jobs per request (the answer says when more match).
BULK_RETRY_MAX = 5_000

#: A common route under this share of notifications is filtered through its notifications'
#: ids (hashed) rather than by looking up each job's notification (api_job_filters).
RARE_ROUTE_SHARE = 0.05

SORTS = ("id", "created_at")
ORDERS = ("asc", "desc")

#: (sort, order) -> the keyset condition and ORDER BY put into `api_jobs_page`.
_PAGING = {
    ("id", "desc"): (
        "(%(cursor_id)s::bigint IS NULL OR j.id < %(cursor_id)s::bigint)",
        "j.id DESC",
    ),
    ("id", "asc"): (
        "(%(cursor_id)s::bigint IS NULL OR j.id > %(cursor_id)s::bigint)",
        "j.id ASC",
    ),
    ("created_at", "desc"): (
        "(%(cursor_at)s::timestamptz IS NULL"
        " OR (j.created_at, j.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))",
        "j.created_at DESC, j.id DESC",
    ),
    ("created_at", "asc"): (
        "(%(cursor_at)s::timestamptz IS NULL"
        " OR (j.created_at, j.id) > (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))",
        "j.created_at ASC, j.id ASC",
    ),
}


class ChangeNotFound(OperatorError, LookupError):
    def __init__(self, change_id: int) -> None:
        super().__init__(f"no change {change_id} in the change log")
        self.change_id = change_id


class BadCursor(OperatorError, ValueError):
    """A `cursor` that this API did not hand out (or for another sort)."""


@dataclass(frozen=True)
class JobFilter:
    """The list filters; None is no filter. `q` is free text over the last error and the
    recipient (case-insensitive, among the newest `Q_WINDOW` jobs)."""

    status: str | None = None
    actor: str | None = None
    queue: str | None = None
    route: str | None = None
    table: str | None = None
    recipient: str | None = None
    change_id: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None

    def params(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        values = asdict(self)
        values["q_floor"] = 0
        values["route_rare"] = False
        if self.route is not None:
            row = conn.execute(queries["api_route_share"], {"route": self.route}).fetchone()
            # Not among the common values: the planner knows it is rare and starts from
            # the route's index; the hashed form would scan every job for nothing.
            values["route_rare"] = row is not None and row["share"] < RARE_ROUTE_SHARE
        if self.q is not None:
            values["q"] = "%" + _escape_like(self.q) + "%"
            row = conn.execute(queries["api_q_floor"], {"window": Q_WINDOW}).fetchone()
            values["q_floor"] = row["floor"] if row else 0
        return values


def _escape_like(text: str) -> str:
    """`text` matched literally by ILIKE (its default escape character is the backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- pages -----------------------------------------------------------------------------------


@dataclass
class JobPage:
    jobs: list[dict[str, Any]]
    #: The cursor of the next page (None: this was the last).
    next_cursor: str | None


def encode_cursor(sort: str, row: dict[str, Any]) -> str:
    raw = f"{sort}|{row['id']}" + (f"|{row['created_at'].isoformat()}" if sort != "id" else "")
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> dict[str, Any]:
    """The keyset parameters a cursor stands for; BadCursor when it cannot be one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split("|")
        if parts[0] != sort or len(parts) != (2 if sort == "id" else 3):
            raise ValueError(parts[0])
        at = datetime.fromisoformat(parts[2]) if sort != "id" else None
        if at is not None and at.tzinfo is None:
            raise ValueError("naive time")
        return {"cursor_id": int(parts[1]), "cursor_at": at}
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor(f"cursor is not a cursor this API gave for sort={sort}") from None


def list_jobs(
    conn: psycopg.Connection[Any],
    where: JobFilter,
    *,
    sort: str = "id",
    order: str = "desc",
    limit: int = 50,
    cursor: str | None = None,
) -> JobPage:
    """One page of jobs matching `where`, in (sort, order), after `cursor`."""
    keyset, order_by = _PAGING[(sort, order)]
    text = _sql("api_jobs_page").replace("/*KEYSET*/", keyset).replace("/*ORDER*/", order_by)
    params = where.params(conn)
    params.update(decode_cursor(sort, cursor) if cursor else {"cursor_id": None, "cursor_at": None})
    params["limit"] = limit + 1
    rows = [dict(r) for r in conn.execute(text, params, prepare=False).fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(rows, encode_cursor(sort, rows[-1]) if more else None)


def _sql(name: str) -> str:
    """A job query with the shared filter block in place."""
    return queries[name].replace("/*FILTERS*/", queries["api_job_filters"])


@dataclass
class StatusCounts:
    counts: dict[str, int]
    #: True when the ledger is past `SMALL_LEDGER` jobs: the planner's estimates, not counts.
    estimated: bool


def count_jobs(conn: psycopg.Connection[Any], where: JobFilter) -> StatusCounts:
    """Jobs matching `where` per status (every status, zeros included; only `where.status`
    when it is set): exact on a small ledger, the planner's estimates on a large one."""
    params = where.params(conn)
    statuses = [where.status] if where.status else list(STATUSES)
    if ledger_size(conn) <= SMALL_LEDGER:
        rows = conn.execute(_sql("api_jobs_count"), params, prepare=False).fetchall()
        found = {r["status"]: r["n"] for r in rows}
        return StatusCounts({s: found.get(s, 0) for s in statuses}, estimated=False)
    text = "EXPLAIN (FORMAT JSON) " + _sql("api_jobs_matching")
    counts = {}
    for status in statuses:
        row = conn.execute(text, {**params, "status": status}, prepare=False).fetchone()
        counts[status] = int(row["QUERY PLAN"][0]["Plan"]["Plan Rows"]) if row else 0
    return StatusCounts(counts, estimated=True)


def ledger_size(conn: psycopg.Connection[Any]) -> int:
    """About how many jobs the ledger holds (the planner's figure; counted, up to just past
    `SMALL_LEDGER`, while it has none)."""
    row = conn.execute(queries["api_ledger_size"], {"cap": SMALL_LEDGER}).fetchone()
    if row is None:
        return 0
    return int(row["capped"] if row["capped"] is not None else row["estimate"])


# -- one job, one change ---------------------------------------------------------------------


def job_detail(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """A job, its timings, its notification, summary (no aliases map) and delivery."""
    job = conn.execute(queries["api_job"], {"id": job_id}).fetchone()
    if job is None:
        raise JobNotFound(job_id)
    nid = job["notification_id"]
    notification = summary = delivery = None
    if nid is not None:
        notification = conn.execute(queries["api_notification"], {"id": nid}).fetchone()
        summary = conn.execute(queries["api_summary"], {"notification_id": nid}).fetchone()
        deliveries = conn.execute(queries["api_deliveries"], {"notification_ids": [nid]})
        delivery = next(
            (d for d in deliveries.fetchall() if d["recipient"] == job["recipient"]), None
        )
    return {
        "job": dict(job),
        "notification": notification,
        "summary": summary,
        "delivery": delivery,
    }


def change_trace(conn: psycopg.Connection[Any], change_id: int) -> dict[str, Any]:
    """A change's path: claimed or not, its outcome, each notification listing it with
    its jobs, summary and deliveries."""
    change = conn.execute(queries["api_change"], {"id": change_id}).fetchone()
    if change is None:
        raise ChangeNotFound(change_id)
    notes = [dict(n) for n in conn.execute(queries["api_change_notifications"], {"id": change_id})]
    ids = {"notification_ids": [n["id"] for n in notes]}
    jobs = conn.execute(queries["api_notification_jobs"], ids).fetchall() if notes else []
    summaries = conn.execute(queries["api_notification_summaries"], ids).fetchall() if notes else []
    deliveries = (
        conn.execute(queries["api_notification_deliveries"], ids).fetchall() if notes else []
    )
    by_summary = {s["notification_id"]: s for s in summaries}
    for note in notes:
        note["jobs"] = [j for j in jobs if j["notification_id"] == note["id"]]
        note["summary"] = by_summary.get(note["id"])
        note["deliveries"] = [d for d in deliveries if d["notification_id"] == note["id"]]
    return {"change": dict(change), "notifications": notes}


def record_change(
    conn: psycopg.Connection[Any],
    *,
    table: str,
    operation: str,
    new_row: dict[str, Any] | None,
    old_row: dict[str, Any] | None,
) -> dict[str, Any]:
    """Enter a change in the change log as the trigger would, and wake the orchestrator
    (NOTIFY, delivered at commit). Returns its id, table name and time."""
    with conn.transaction():
        row = conn.execute(
            queries["api_insert_change"],
            {
                "table": table,
                "operation": operation,
                "new_row": Jsonb(new_row) if new_row is not None else None,
                "old_row": Jsonb(old_row) if old_row is not None else None,
            },
        ).fetchone()
    assert row is not None  # INSERT ... RETURNING one row
    return dict(row)


# -- acting on jobs ----------------------------------------------------------------------------


def retry_matching(
    conn: psycopg.Connection[Any],
    where: JobFilter,
    *,
    publish: Publish,
    max_jobs: int = BULK_RETRY_MAX,
) -> RetryResult:
    """Bulk retry: every job matching `where` (its status must be failed or canceled),
    batch by batch; at most `max_jobs` per call (`more` says whether others match)."""
    if where.status not in inspect.RETRYABLE:
        raise OperatorError(
            f"status must be one of {', '.join(inspect.RETRYABLE)} for a bulk retry"
        )
    params = where.params(conn)

    def lock(after: int, limit: int) -> Sequence[dict[str, Any]]:
        p = {**params, "after": after, "limit": limit}
        return conn.execute(_sql("api_jobs_lock_matching"), p, prepare=False).fetchall()

    return inspect.retry_batches(conn, lock, publish=publish, max_jobs=max_jobs)


def retry_one(conn: psycopg.Connection[Any], job_id: int, *, publish: Publish) -> RetryResult:
    return inspect.retry_jobs(conn, [job_id], publish=publish)


def cancel_pending(conn: psycopg.Connection[Any], job_id: int) -> str:
    return inspect.cancel_job(conn, job_id, only_pending=True)


# -- health ------------------------------------------------------------------------------------


def health_figures(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Ledger and change-log figures for /health and the overview, in one round trip, plus
    every circuit breaker's row."""
    row = conn.execute(queries["api_health_figures"]).fetchone()
    figures = dict(row) if row else {}
    figures["breakers"] = breaker_states(conn)
    return figures


def missing_migrations(conn: psycopg.Connection[Any], expected: Sequence[str]) -> list[str]:
    """Migrations this code expects that the database has not applied (readiness)."""
    try:
        applied = {r["name"] for r in conn.execute(queries["api_migrations"]).fetchall()}
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return list(expected)
    return [name for name in expected if name not in applied]


def stats(conn: psycopg.Connection[Any], *, hours: float) -> dict[str, Any]:
    """`herald stats` over a window of `hours`, with p95 processing time and recent failures."""
    window = hours * 3600
    figures = ledger_stats(conn, window_seconds=window)
    for r in conn.execute(queries["api_stats_percentiles"], {"window_seconds": window}):
        actor = figures["actors"].setdefault(r["actor"], {})
        actor["p95_processing_seconds"] = r["p95_seconds"]
    for actor in figures["actors"].values():
        actor.setdefault("p95_processing_seconds", None)
    figures["recent_failures"] = [
        dict(r)
        for r in conn.execute(
            queries["api_recent_failures"], {"window_seconds": window, "limit": 20}
        )
    ]
    return figures
