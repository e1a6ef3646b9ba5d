"""Digest schedules in the ledger: list, set, pause, resume, delete, and keep them true.

A schedule is one recipient's calendar for one digest route. It follows the route's
`digest` calendar unless the recipient has their own (`herald digests set`, the API), in
the recipient's own timezone, else the directory's, else the route's `digest_timezone`.
Whenever what is in effect changes (herald.toml, `digests set`, a recipient's timezone)
the next due time is computed again; the cursor never moves back, so the next digest
still holds everything since the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from herald.config import DEFAULT_DIGEST, OPERATIONS, Route, Settings
from herald.db import DictConnection
from herald.recipients import RecipientError
from herald.schedules import ScheduleError, next_due, parse_schedule, zone
from herald.sql import queries

__all__ = [
    "Change",
    "ScheduleNotFound",
    "delete_schedule",
    "digest_route",
    "ensure_schedules",
    "get_schedule",
    "list_schedules",
    "reconcile",
    "set_schedule",
]

#: Longest list of tables in a schedule's filter, and longest table name.
MAX_FILTER_ITEMS = 50
MAX_TABLE_CHARS = 128
_UNSET: Any = object()


class ScheduleNotFound(LookupError):
    """No digest schedule with that id (or for that route and recipient)."""


def digest_route(settings: Settings, name: str) -> Route | None:
    """The configured route `name` when it is in digest mode, else None."""
    for route in settings.routes:
        if route.name == name and route.mode == "digest":
            return route
    return None


def in_effect(
    settings: Settings,
    route: str,
    own_schedule: str | None,
    own_timezone: str | None,
    recipient_timezone: str | None,
) -> tuple[str, str]:
    """The calendar and timezone a schedule follows: its own, else the route's."""
    found = digest_route(settings, route)
    schedule = own_schedule or (found.digest if found else None) or DEFAULT_DIGEST
    timezone = own_timezone or recipient_timezone or (found.digest_timezone if found else "UTC")
    return schedule, timezone


def due_after(schedule: str, timezone: str, after: datetime) -> datetime:
    return next_due(parse_schedule(schedule), zone(timezone), after)


def list_schedules(
    conn: DictConnection,
    *,
    route: str | None = None,
    recipient: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    return conn.execute(
        queries["digest_schedules_list"],
        {"id": None, "route": route, "recipient": recipient, "after": after, "limit": limit},
    ).fetchall()


def get_schedule(conn: DictConnection, schedule_id: int) -> dict[str, Any]:
    rows = conn.execute(
        queries["digest_schedules_list"],
        {"id": schedule_id, "route": None, "recipient": None, "after": None, "limit": 1},
    ).fetchall()
    if not rows:
        raise ScheduleNotFound(f"no digest schedule {schedule_id}")
    return rows[0]


@dataclass(frozen=True)
class Change:
    """What `set_schedule` changes; a field left unset keeps its value. `schedule=None`
    and `timezone=None` go back to the route's."""

    schedule: str | None = _UNSET
    timezone: str | None = _UNSET
    operations: Sequence[str] | None = _UNSET
    tables: Sequence[str] | None = _UNSET
    paused: bool = _UNSET

    def checked(self) -> Change:
        """The change with its values checked and written canonically (RecipientError
        naming the first bad one)."""
        values: dict[str, Any] = {}
        try:
            if self.schedule not in (_UNSET, None):
                values["schedule"] = str(parse_schedule(self.schedule))
            if self.timezone not in (_UNSET, None):
                zone(self.timezone)
        except ScheduleError as exc:
            raise RecipientError(str(exc)) from None
        if self.operations not in (_UNSET, None):
            ops = [str(op).upper() for op in self.operations]
            if not ops or any(op not in OPERATIONS for op in ops):
                raise RecipientError(f"operations must be some of {', '.join(OPERATIONS)}")
            values["operations"] = sorted(set(ops))
        if self.tables not in (_UNSET, None):
            values["tables"] = _tables(self.tables)
        return replace(self, **values)


def _tables(given: Sequence[str]) -> list[str]:
    tables = [t.strip() for t in given if isinstance(t, str)]
    if (
        not tables
        or len(tables) != len(given)
        or len(tables) > MAX_FILTER_ITEMS
        or any(not t or len(t) > MAX_TABLE_CHARS or "\x00" in t for t in tables)
    ):
        raise RecipientError(
            f"tables must be 1 to {MAX_FILTER_ITEMS} table names "
            f"(at most {MAX_TABLE_CHARS} characters each)"
        )
    return sorted(set(tables))


def set_schedule(
    conn: DictConnection,
    settings: Settings,
    route: str,
    recipient: str,
    change: Change,
    now: datetime,
    *,
    schedule_id: int | None = None,
) -> dict[str, Any]:
    """Create or change the schedule of (`route`, `recipient`) (or `schedule_id`) in the
    caller's transaction; the next due time is computed again when the calendar or the
    timezone in effect changes, or when it is resumed. Returns the schedule."""
    change = change.checked()
    current = conn.execute(
        queries["digest_schedule_lock"],
        {"id": schedule_id, "route": route, "recipient": recipient},
    ).fetchone()
    if current is None and schedule_id is not None:
        raise ScheduleNotFound(f"no digest schedule {schedule_id}")
    if current is None:
        tz_row = conn.execute(queries["recipient_timezone"], {"address": recipient}).fetchone()
        current = {"route": route, "recipient": recipient, "own_schedule": None,
                   "own_timezone": None, "operations": None, "tables": None, "paused": False,
                   "schedule": None, "timezone": None, "next_due_at": None,
                   "recipient_timezone": tz_row["timezone"] if tz_row else None}  # fmt: skip
    merged = dict(current)
    for key in ("operations", "tables", "paused"):
        if getattr(change, key) is not _UNSET:
            merged[key] = getattr(change, key)
    for key, own in (("schedule", "own_schedule"), ("timezone", "own_timezone")):
        if getattr(change, key) is not _UNSET:
            merged[own] = getattr(change, key)
    schedule, timezone = in_effect(
        settings, merged["route"], merged["own_schedule"], merged["own_timezone"],
        merged["recipient_timezone"],
    )  # fmt: skip
    next_due_at = merged["next_due_at"]
    resumed = current["paused"] and not merged["paused"]
    if (schedule, timezone) != (current["schedule"], current["timezone"]) or resumed:
        next_due_at = due_after(schedule, timezone, now)
    row = conn.execute(
        queries["digest_schedule_upsert"],
        {**merged, "schedule": schedule, "timezone": timezone, "next_due_at": next_due_at,
         "now": now},
    ).fetchone()  # fmt: skip
    assert row is not None
    return get_schedule(conn, row["id"])


def delete_schedule(
    conn: DictConnection, settings: Settings, schedule_id: int, now: datetime
) -> dict[str, Any] | None:
    """Drop a recipient's own settings: back to the route's calendar, unpaused, unfiltered
    (its cursor kept). A schedule of a route no longer in digest mode is deleted. Returns
    the schedule as it now is, or None when it was deleted."""
    current = get_schedule(conn, schedule_id)
    if digest_route(settings, current["route"]) is None:
        conn.execute(queries["digest_schedule_delete"], {"id": schedule_id})
        return None
    reset = Change(schedule=None, timezone=None, operations=None, tables=None, paused=False)
    return set_schedule(conn, settings, current["route"], current["recipient"], reset, now,
                        schedule_id=schedule_id)  # fmt: skip


def _routes_param(settings: Settings) -> Jsonb:
    return Jsonb([
        {"route": r.name, "schedule": r.digest, "timezone": r.digest_timezone}
        for r in settings.routes
        if r.mode == "digest"
    ])  # fmt: skip


def ensure_schedules(
    conn: DictConnection, settings: Settings, now: datetime, *, limit: int = 1000
) -> int:
    """A schedule for every recipient with digest items waiting and none yet: the route's
    calendar, first due after `now`. Returns how many were created."""
    rows = conn.execute(queries["digest_unscheduled"], {"limit": limit}).fetchall()
    new = []
    for row in rows:
        schedule, timezone = in_effect(settings, row["route"], None, None,
                                       row["recipient_timezone"])  # fmt: skip
        new.append({"route": row["route"], "recipient": row["recipient"], "schedule": schedule,
                    "timezone": timezone, "cursor_at": now.isoformat(),
                    "next_due_at": due_after(schedule, timezone, now).isoformat()})  # fmt: skip
    if new:
        conn.execute(queries["digest_schedules_insert"], {"rows": Jsonb(new)})
    return len(new)


def reconcile(conn: DictConnection, settings: Settings, now: datetime, *, limit: int = 1000) -> int:
    """Compute again the next due time of every schedule whose calendar or timezone in
    effect changed (first due after `now`). Returns how many."""
    rows = conn.execute(
        queries["digest_schedules_to_reconcile"],
        {"routes": _routes_param(settings), "limit": limit},
    ).fetchall()
    changed = [
        {"id": r["id"], "schedule": r["schedule"], "timezone": r["timezone"],
         "next_due_at": due_after(r["schedule"], r["timezone"], now).isoformat()}
        for r in rows
    ]  # fmt: skip
    if changed:
        conn.execute(queries["digest_schedules_recomputed"], {"rows": Jsonb(changed)})
    return len(changed)
