"""Routing: which route (recipients, AI, priority, mode) a change takes, every claimed
change's outcome, and the first jobs of a routed change."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from herald.changes import check_shape
from herald.config import Route, Settings
from herald.errors import PermanentError
from herald.ledger import NewJob
from herald.recipients import bare
from orchestrator.claim import Claimed, Refused

logger = logging.getLogger(__name__)

#: (change id, outcome, error): what write_batch records for each claimed change.
Outcome = tuple[int, str, str | None]


class Routable(Protocol):
    """What routing reads of a change (a claimed one, or a loaded `herald.changes.Change`)."""

    @property
    def table_name(self) -> str: ...
    @property
    def operation(self) -> str: ...


@dataclass(frozen=True)
class Planned:
    change: Claimed
    route: Route
    #: Who it goes to, as orchestrator/recipients.py resolved them (row addresses added,
    #: muted ones left out); None: the route's recipients as configured.
    recipients: tuple[str, ...] | None = None

    @property
    def to(self) -> tuple[str, ...]:
        return self.route.recipients if self.recipients is None else self.recipients


def route(change: Routable, routes: Sequence[Route]) -> Route | None:
    """The first route matching the change's table and operation, or None."""
    for candidate in routes:
        if candidate.matches(change.table_name, change.operation):
            return candidate
    return None


def plan(
    changes: Sequence[Claimed | Refused], settings: Settings
) -> tuple[list[Planned], list[Outcome]]:
    """Route each change; return what to notify and every change's outcome. A refused or
    malformed change fails alone, with its reason; the others go on."""
    planned: list[Planned] = []
    outcomes: list[Outcome] = []
    for change in changes:
        if isinstance(change, Refused):
            logger.warning("Change %d refused: %s", change.id, change.reason)
            outcomes.append((change.id, "failed", change.reason))
            continue
        try:
            check_shape(change.id, change.operation, change.old_row_type, change.new_row_type)
        except PermanentError as exc:
            logger.warning("Change %d is malformed: %s", change.id, exc)
            outcomes.append((change.id, "failed", str(exc)))
            continue
        chosen = route(change, settings.routes)
        if chosen is None:
            outcomes.append((change.id, "skipped", "no matching route"))
        elif not chosen.recipients and not chosen.recipient_fields:
            outcomes.append((change.id, "skipped", f"route {chosen.name!r} has no recipients"))
        else:
            planned.append(Planned(change, chosen))
            outcomes.append((change.id, "routed", None))
    return planned, outcomes


def digest_items(notification_id: int, p: Planned) -> list[dict[str, object]]:
    """A digest route's notification, once per recipient, to wait for its digest (as
    write_batch inserts them into herald.digest_items); none for an immediate route."""
    if p.route.mode != "digest":
        return []
    return [
        {"notification_id": notification_id, "route": p.route.name, "recipient": bare(r),
         "to_address": r, "table_name": p.change.table_name, "operation": p.change.operation,
         "changed_at": p.change.changed_at.isoformat()}
        for r in p.to
    ]  # fmt: skip


def first_jobs(notification_id: int, p: Planned, settings: Settings) -> list[NewJob]:
    """AI routes start with enrich; the others go straight to one email job per recipient.
    A digest route's notification waits for its digest (herald/digests): no job now."""
    if p.route.mode == "digest":
        return []
    if p.route.ai and settings.ai.enabled:
        return [NewJob("enrich", notification_id, p.change.id, None, p.route.priority)]
    return [NewJob("send_email", notification_id, p.change.id, r, p.route.priority) for r in p.to]
