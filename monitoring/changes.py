"""Changes that became no notification, by outcome and reason: read for the exporter
(`herald_changes_not_routed`) and for `herald stats` (skipped and failed changes).

"Nothing dropped without a trace": a change no route takes, or whose route has no
recipients, is claimed with the outcome `skipped` and its reason; one over a limit or
malformed is `failed`. One query (monitoring/sql/metrics.sql, over a partial index)
counts them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from monitoring.metrics import CHANGE_OUTCOME_REASONS
from monitoring.sql import metrics_queries


def read_not_routed(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """{(outcome, reason): changes} for the changes still in the change log."""
    rows = conn.execute(metrics_queries["changes_not_routed"]).fetchall()
    return {(r["outcome"], r["reason"]): int(r["n"]) for r in rows}


def by_outcome(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, Any]]:
    """`herald stats`' shape: {"skipped": {"total", "by_reason"}, "failed": {...}}, every
    known reason present (0 when none)."""
    summary: dict[str, dict[str, Any]] = {}
    for outcome, reason in dict.fromkeys([*CHANGE_OUTCOME_REASONS, *sorted(counts)]):
        entry = summary.setdefault(outcome, {"total": 0, "by_reason": {}})
        n = counts.get((outcome, reason), 0)
        entry["by_reason"][reason] = n
        entry["total"] += n
    return summary
