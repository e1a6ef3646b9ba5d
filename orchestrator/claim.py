"""Claiming changes: `FOR UPDATE SKIP LOCKED`, never a high-water-mark id.

A change whose transaction commits after a higher id was claimed is simply still
unclaimed the next time round, so it is found; concurrent claimers skip each
other's rows instead of waiting or taking them twice.

Routing needs a change's table, operation and key, not its rows: the orchestrator never
fetches old_row or new_row, so its memory does not depend on what they hold. Each change is
measured in PostgreSQL first (lock_changes) for the stages that do load it: one over the
size or depth limit is refused with the reason, alone, and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.changes import over_limits
from herald.config import LimitSettings
from herald.db import DictConnection
from herald.sql import queries


@dataclass(frozen=True)
class Claimed:
    """A change as the orchestrator sees it: what routing needs, and the JSON types of its
    rows (jsonb_typeof; None when absent) to tell a malformed one."""

    id: int
    table_name: str
    operation: str
    row_pk: dict[str, Any] | None
    changed_at: datetime
    old_row_type: str | None
    new_row_type: str | None


@dataclass(frozen=True)
class Refused:
    """A change claimed but over a limit, measured in SQL: it is failed with the reason."""

    id: int
    reason: str


def lock_batch(conn: DictConnection, limit: int, limits: LimitSettings) -> list[Claimed | Refused]:
    """Lock up to `limit` unclaimed changes, oldest first, inside the caller's transaction;
    the caller marks them claimed (with their outcomes) before it commits."""
    rows = conn.execute(
        queries["lock_changes"],
        {
            "limit": limit,
            "max_bytes": limits.max_change_bytes,
            "max_depth": limits.max_change_depth,
        },
    ).fetchall()
    claimed: list[Claimed | Refused] = []
    for row in rows:
        reason = over_limits(
            row, max_bytes=limits.max_change_bytes, max_depth=limits.max_change_depth
        )
        if reason is not None:
            claimed.append(Refused(row["id"], reason))
            continue
        claimed.append(
            Claimed(
                id=row["id"],
                table_name=row["table_name"],
                operation=row["operation"],
                row_pk=row["row_pk"],
                changed_at=row["changed_at"],
                old_row_type=row["old_row_type"],
                new_row_type=row["new_row_type"],
            )
        )
    return claimed
