"""`herald stats`: the job ledger at a glance (counts by actor and status, success rate,
processing time, overdue jobs, deliveries, breakers, changes that became no notification).

Used by the CLI, the demo's closing report and `GET /api/stats`; SQL in
`monitoring/sql/inspect.sql`.
"""

from __future__ import annotations

from typing import Any

import psycopg

from herald.breaker import breaker_states
from herald.ledger import ACTOR_QUEUES, STATUSES
from monitoring.changes import by_outcome, read_not_routed
from monitoring.sql import queries

#: A pending job is overdue when it is still unpublished this long after it was written,
#: or its retry was due this long ago.
OVERDUE_UNPUBLISHED_SECONDS = 30
OVERDUE_ETA_SECONDS = 60
#: The window `herald stats` averages processing time over.
PROCESSING_WINDOW_SECONDS = 24 * 3600

DELIVERY_STATUSES = ("sending", "sent", "failed")


def stats(
    conn: psycopg.Connection[Any],
    *,
    overdue_unpublished_seconds: float = OVERDUE_UNPUBLISHED_SECONDS,
    overdue_eta_seconds: float = OVERDUE_ETA_SECONDS,
    window_seconds: float = PROCESSING_WINDOW_SECONDS,
) -> dict[str, Any]:
    """The ledger at a glance, as a JSON-ready dict.

    `actors` maps every known actor (and any other found in the ledger) to its counts by
    status (every status present, zeros included), `total`, `success_rate` (complete /
    (complete + failed), None when neither), `mean_processing_seconds` (complete jobs
    finished in the window; the duration of their last attempt) and `overdue`.
    """
    actors = _ActorFigures()
    for r in conn.execute(queries["stats_jobs_by_actor_status"]).fetchall():
        a = actors[r["actor"]]
        a["counts"][r["status"]] = r["n"]
        a["total"] += r["n"]
    for r in conn.execute(
        queries["stats_mean_processing"], {"window_seconds": window_seconds}
    ).fetchall():
        a = actors[r["actor"]]
        a["mean_processing_seconds"] = r["mean_seconds"]
        a["completed_in_window"] = r["n"]
    overdue = _overdue(conn, actors, overdue_unpublished_seconds, overdue_eta_seconds)
    for a in actors.values():
        done = a["counts"]["complete"] + a["counts"]["failed"]
        a["success_rate"] = a["counts"]["complete"] / done if done else None
    unclaimed = conn.execute(queries["stats_unclaimed_changes"]).fetchone() or {}
    last_run = conn.execute(queries["stats_last_orchestrator_success"]).fetchone() or {}
    return {
        "actors": dict(sorted(actors.items())),
        "overdue": overdue,
        "unclaimed_changes": {
            "count": unclaimed.get("n", 0),
            "oldest_seconds": unclaimed.get("oldest_seconds"),
        },
        "deliveries": _deliveries(conn),
        "last_successful_orchestrator_run": last_run.get("finished_at"),
        "processing_window_seconds": window_seconds,
        "breakers": breaker_states(conn),  # circuit breakers: state, failures, opened_at
        # Changes that became no notification: {"skipped": {"total", "by_reason"}, "failed"}.
        **_not_routed(conn),
    }


class _ActorFigures(dict[str, dict[str, Any]]):
    """Figures per actor, every ledger actor present from the start (zeros, not absent)."""

    def __init__(self) -> None:
        super().__init__()
        for name in ACTOR_QUEUES:
            self[name]  # noqa: B018 - creates the entry

    def __missing__(self, name: str) -> dict[str, Any]:
        figures = self[name] = {
            "counts": dict.fromkeys(STATUSES, 0),
            "total": 0,
            "success_rate": None,
            "mean_processing_seconds": None,
            "completed_in_window": 0,
            "overdue": 0,
        }
        return figures


def _overdue(
    conn: psycopg.Connection[Any], actors: _ActorFigures, unpublished: float, eta: float
) -> dict[str, Any]:
    total, oldest = 0, None
    params = {"unpublished_seconds": unpublished, "eta_seconds": eta}
    for r in conn.execute(queries["stats_overdue"], params).fetchall():
        actors[r["actor"]]["overdue"] = r["n"]
        total += r["n"]
        oldest = r["oldest_seconds"] if oldest is None else max(oldest, r["oldest_seconds"])
    return {
        "total": total,
        "oldest_seconds": oldest,
        "unpublished_after_seconds": unpublished,
        "eta_late_by_seconds": eta,
    }


def _deliveries(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    deliveries: dict[str, Any] = {
        "by_status": dict.fromkeys(DELIVERY_STATUSES, 0),
        "total": 0,
        "ambiguous": 0,
    }
    for r in conn.execute(queries["stats_deliveries"]).fetchall():
        deliveries["by_status"][r["status"]] = r["n"]
        deliveries["total"] += r["n"]
        deliveries["ambiguous"] += r["ambiguous"]
    return deliveries


def _not_routed(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    summary = by_outcome(read_not_routed(conn))
    return {f"{outcome}_changes": entry for outcome, entry in summary.items()}
