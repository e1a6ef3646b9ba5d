"""Routing: which route (recipients, AI, priority, mode) a change takes."""

from __future__ import annotations

from collections.abc import Sequence

from herald.changes import Change
from herald.config import Route


def route(change: Change, routes: Sequence[Route]) -> Route | None:
    """The first route matching the change's table and operation, or None."""
    for candidate in routes:
        if candidate.matches(change.table_name, change.operation):
            return candidate
    return None
