"""Routes against tracked tables: the gaps through which changes go nowhere.

A tracked table that no route matches has every change skipped ("no matching route");
a route naming a table that is not tracked never sees a change. Neither is an error (a
table may be tracked before its route is written), but both are said: in the
orchestrator's log once per run (`warn_gaps`), and by `herald check` (`find_gaps`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from psycopg_pool import ConnectionPool

from herald import db
from herald.config import OPERATIONS, Route, Settings
from herald.tracking import tracked_tables

logger = logging.getLogger(__name__)

#: The same warning again from one process at most this often: the waker can start many
#: runs a minute, and one line per run would bury the rest of the log.
REPEAT_AFTER_SECONDS = 600.0


def covers(route: Route, table_name: str) -> bool:
    """Whether `route` matches some change to `table_name` (any of its operations)."""
    return any(route.matches(table_name, op) for op in OPERATIONS)


def names_table(route: Route, table_name: str) -> bool:
    """Whether `route`'s `table` names `table_name`, whatever its operations."""
    return covers(replace(route, operations=OPERATIONS), table_name)


@dataclass(frozen=True)
class Gaps:
    """Tracked tables no route matches, and routes whose table is not tracked."""

    unrouted_tables: tuple[str, ...]
    untracked_routes: tuple[Route, ...]

    def __bool__(self) -> bool:
        return bool(self.unrouted_tables or self.untracked_routes)

    def messages(self) -> list[str]:
        """One sentence per gap, saying what happens to the changes and what to do."""
        lines = [
            f"tracked table {table} has no route: its changes are skipped "
            "(add a [[routes]] entry for it, or stop tracking it)"
            for table in self.unrouted_tables
        ]
        lines += [
            f"route {route.name!r} names table {route.table!r}, which is not tracked: "
            f"it never sees a change (run `herald track {route.table}`)"
            for route in self.untracked_routes
        ]
        return lines


def find_gaps(routes: Sequence[Route], tracked: Iterable[str]) -> Gaps:
    """The gaps between `routes` and the `tracked` tables (named `schema.table`)."""
    tables = list(tracked)
    return Gaps(
        unrouted_tables=tuple(t for t in tables if not any(covers(r, t) for r in routes)),
        untracked_routes=tuple(
            r for r in routes if r.table != "*" and not any(names_table(r, t) for t in tables)
        ),
    )


class _Recent:
    """Warnings said lately by this process, so a repeat waits `REPEAT_AFTER_SECONDS`."""

    def __init__(self) -> None:
        self._said: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, message: str, now: float) -> bool:
        with self._lock:
            last = self._said.get(message)
            if last is not None and now - last < REPEAT_AFTER_SECONDS:
                return False
            self._said[message] = now
            return True


_recent = _Recent()


def warn_gaps(pool: ConnectionPool[Any], settings: Settings) -> Gaps | None:
    """Log each gap as a warning (once per run; a repeat at most every ten minutes per
    process). Never fails the run: a failed read is logged and the run goes on."""
    try:
        with db.connection(pool) as conn:
            gaps = find_gaps(settings.routes, tracked_tables(conn))
            conn.rollback()  # a read; the pool wants its connection back idle
    except Exception as exc:  # noqa: BLE001 - a warning must never stop the orchestrator
        logger.debug("Could not compare routes with tracked tables: %s", exc)
        return None
    now = time.monotonic()
    for message in gaps.messages():
        if _recent.due(message, now):
            logger.warning("Changes with nowhere to go: %s", message)
    return gaps
