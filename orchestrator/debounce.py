"""Debounce: changes to one row on a route inside its window fold into one notification,
whose jobs wait in the ledger (eta) until the row has been quiet for the window.

A notification lists at most `[orchestrator] max_changes_per_notification` changes. Past
it a new notification starts for the row and the full one keeps its due time: no change is
ever dropped or merged away, and what one enrich or email job loads stays bounded (that
many changes, each within `[limits] max_change_bytes`) however long a row churns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from herald import ledger
from herald.config import Settings
from herald.db import DictConnection
from herald.sql import queries
from orchestrator.routing import Planned, first_jobs


def debounce_key(p: Planned) -> str:
    """Changes to the same row on the same route fold together."""
    return f"{p.route.name}|{p.change.table_name}|{json.dumps(p.change.row_pk, sort_keys=True)}"


def write_debounced(conn: DictConnection, planned: list[Planned], settings: Settings) -> int:
    """Fold changes into each row's open notification, up to the cap, then into new ones;
    their jobs wait in the ledger until due. Returns jobs written."""
    groups: dict[str, list[Planned]] = {}
    for p in planned:
        groups.setdefault(debounce_key(p), []).append(p)
    cap = settings.orchestrator.max_changes_per_notification
    written = 0
    for key, items in groups.items():
        existing = conn.execute(queries["open_debounced_notification"], {"key": key}).fetchone()
        if existing is not None and len(existing["change_ids"]) >= cap:
            existing = None  # full: it keeps its due time, a new notification starts
        room = cap - len(existing["change_ids"]) if existing is not None else cap
        chunks = [items[:room]] + [items[i : i + cap] for i in range(room, len(items), cap)]
        for chunk in chunks:
            written += _write_notification(conn, key, chunk, existing, settings)
            existing = None  # only the first chunk folds into the open notification
    return written


def _write_notification(
    conn: DictConnection,
    key: str,
    items: Sequence[Planned],
    existing: dict[str, Any] | None,
    settings: Settings,
) -> int:
    """A notification listing `existing`'s changes (if any) and `items`'; the previous one's
    jobs (never published) become `superseded`. Returns jobs written."""
    first, last = items[0], items[-1]
    route = first.route
    change_ids = [p.change.id for p in items]
    first_change_at = first.change.changed_at
    if existing is not None:
        change_ids = list(existing["change_ids"]) + change_ids
        first_change_at = existing["first_change_at"]
    row = conn.execute(
        queries["insert_debounced_notification"],
        {
            "route": route.name,
            "table_name": first.change.table_name,
            "row_pk": Jsonb(first.change.row_pk),
            "change_ids": change_ids,
            "recipients": list(last.to),  # the row as it is now names who it goes to
            "ai": route.ai and settings.ai.enabled,
            "on_ai_failure": route.on_ai_failure,
            "priority": route.priority,
            "key": key,
            "first_change_at": first_change_at,
            "window": route.debounce_seconds,
            "window_max": route.debounce_window_max,
        },
    ).fetchone()
    assert row is not None  # INSERT ... RETURNING of one row
    if existing is not None:
        conn.execute(
            queries["supersede_jobs"], {"notification_id": existing["id"], "by": row["id"]}
        )
    refs = ledger.write_jobs(conn, first_jobs(row["id"], last, settings))
    conn.execute(queries["set_jobs_eta"], {"eta": row["due_at"], "ids": [r.id for r in refs]})
    return len(refs)
