"""Who a routed change goes to: the route's recipients, the addresses its row names, minus
the muted ones; and why anyone was left out.

A route's `recipient_fields` name columns of the changed row (the old row's for a DELETE).
Only those columns are read, in one query per batch, as text of at most 321 characters:
the orchestrator still never loads a whole row. Each value is checked as strictly as a
configured address (herald/recipients.py): one address, no header-breaking character. A
row without a valid address skips that recipient and says why (herald.recipient_skips
and the herald_recipients_skipped_total counter), never fails the batch, and can never
add a header or a second recipient. A muted recipient is skipped likewise, for immediate
and digest routes alike; a change left with no recipient at all is `skipped`, with the
reasons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from psycopg.types.json import Jsonb

from herald import recipients
from herald.config import Settings
from herald.db import DictConnection
from herald.recipients import RecipientError, bare, is_muted, parse_recipient
from herald.sql import queries
from orchestrator.routing import Outcome, Planned

#: Longest reason kept for a change skipped for want of recipients.
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class Skip:
    """A recipient a change did not go to, and why (a row of herald.recipient_skips)."""

    change_id: int
    route: str
    recipient: str | None
    field: str | None
    reason: str  # no_address | invalid_address | muted
    detail: str


def resolve(
    conn: DictConnection,
    planned: Sequence[Planned],
    outcomes: Sequence[Outcome],
    settings: Settings,
    now: datetime,
) -> tuple[list[Planned], list[Outcome]]:
    """Each planned change with its recipients; a change left with none is skipped. The
    skips are written, and counted, in the caller's transaction."""
    if not planned:
        return list(planned), list(outcomes)
    values = _row_values(conn, planned)
    candidates: dict[int, list[tuple[str, str]]] = {}  # change id -> [(as given, bare)]
    skips: list[Skip] = []
    for p in planned:
        found = [(r, bare(r)) for r in p.route.recipients]
        for field in p.route.recipient_fields:
            got = _row_address(p, field, values.get((p.change.id, field)))
            if isinstance(got, Skip):
                skips.append(got)
            else:
                found.append(got)
        unique: dict[str, tuple[str, str]] = {}
        for given, key in found:
            unique.setdefault(key, (given, key))
        candidates[p.change.id] = list(unique.values())
    mutes = recipients.muted(conn, (k for c in candidates.values() for _, k in c), now)
    kept: list[Planned] = []
    left_out: dict[int, str] = {}
    for p in planned:
        to: list[str] = []
        for given, key in candidates[p.change.id]:
            if is_muted(mutes, key, p.route.name):
                skips.append(Skip(p.change.id, p.route.name, key, None, "muted",
                                  f"{key} is muted for route {p.route.name!r}"))  # fmt: skip
            else:
                to.append(given)
        if to:
            kept.append(replace(p, recipients=tuple(to)))
        else:
            reasons = [s.detail for s in skips if s.change_id == p.change.id]
            why = "; ".join(reasons) or f"route {p.route.name!r} has no recipients"
            left_out[p.change.id] = f"no recipient left: {why}"[:MAX_REASON_CHARS]
    _record(conn, skips)
    rewritten = [
        (cid, "skipped", left_out[cid]) if cid in left_out else (cid, outcome, error)
        for cid, outcome, error in outcomes
    ]
    return kept, rewritten


def _row_values(
    conn: DictConnection, planned: Sequence[Planned]
) -> dict[tuple[int, str], tuple[bool, str | None, str | None]]:
    """(change id, column) -> (found, JSON type, text of a string value), in one query."""
    wanted = [
        {"change_id": p.change.id, "field": field}
        for p in planned
        for field in p.route.recipient_fields
    ]
    if not wanted:
        return {}
    rows = conn.execute(queries["change_recipient_fields"], {"fields": Jsonb(wanted)}).fetchall()
    return {(r["change_id"], r["field"]): (r["found"], r["type"], r["value"]) for r in rows}


def _row_address(
    p: Planned, field: str, value: tuple[bool, str | None, str | None] | None
) -> tuple[str, str] | Skip:
    """The address in one column of the row, or the Skip saying why there is none."""
    found, kind, text = value if value is not None else (False, None, None)
    where = f"{field} of change {p.change.id}"

    def skip(reason: str, detail: str) -> Skip:
        return Skip(p.change.id, p.route.name, None, field, reason, detail)

    if not found or kind == "null" or (kind == "string" and not (text or "").strip()):
        return skip("no_address", f"{where} holds no address")
    if kind != "string" or text is None:
        return skip("invalid_address", f"{where} is a JSON {kind}, not an address")
    try:
        return parse_recipient(text, where=where)
    except RecipientError as exc:
        # The reason names the column and why; never the value, which may be hostile.
        return skip("invalid_address", str(exc)[:200])


def _record(conn: DictConnection, skips: Sequence[Skip]) -> None:
    if not skips:
        return
    conn.execute(queries["insert_recipient_skips"], {"skips": Jsonb([s.__dict__ for s in skips])})
    counts = Counter(s.reason for s in skips)
    recipients.add_counters(
        conn, {(recipients.RECIPIENTS_SKIPPED, reason): n for reason, n in counts.items()}
    )
