"""Claiming changes: `FOR UPDATE SKIP LOCKED`, never a high-water-mark id.

A change whose transaction commits after a higher id was claimed is simply still
unclaimed the next time round, so it is found; concurrent claimers skip each
other's rows instead of waiting or taking them twice.
"""

from __future__ import annotations

from herald.changes import Change
from herald.db import DictConnection
from herald.sql import queries


def lock_batch(conn: DictConnection, limit: int) -> list[Change]:
    """Lock up to `limit` unclaimed changes, oldest first, inside the caller's transaction;
    the caller marks them claimed (with their outcomes) before it commits."""
    rows = conn.execute(queries["lock_changes"], {"limit": limit}).fetchall()
    return [Change.from_row(r) for r in rows]
