"""The recipient directory: who Herald writes to, in which timezone, and who is muted.

An address is kept by its bare form in lower case (`ann@example.org`), whatever display
name it came with, so a mute or a timezone applies however a route or a row spells it.
Addresses from outside (the CLI, the API, a row's `recipient_fields` column) are checked
here as strictly as configured ones, and more: one address only, ASCII dot-atom local part
and host name, no control or header-breaking character, at most 320 characters. The
checks scan each character once (no regular expression that could backtrack).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime
from email.utils import getaddresses, parseaddr
from typing import Any

from psycopg.types.json import Jsonb

from herald.config import ConfigError, Settings, parse_address
from herald.db import DictConnection
from herald.headers import FORBIDDEN_IN_HEADERS
from herald.schedules import ScheduleError, zone
from herald.sql import queries

__all__ = [
    "ALL_ROUTES",
    "MAX_ADDRESS_CHARS",
    "RecipientError",
    "add_counters",
    "bare",
    "check_route",
    "check_timezone",
    "delete_recipient",
    "get_recipient",
    "list_recipients",
    "mute",
    "muted",
    "parse_recipient",
    "set_recipient",
    "unmute",
]

#: Longer than any deliverable address (254) with room for a display name.
MAX_ADDRESS_CHARS = 320
MAX_NAME_CHARS = 200
#: The ledger counter of recipients skipped, by reason (exported as
#: herald_recipients_skipped_total by `herald metrics serve`).
RECIPIENTS_SKIPPED = "recipients_skipped"
SKIP_REASONS = ("no_address", "invalid_address", "muted")
#: A mute's route that means "every route".
ALL_ROUTES = "*"
MUTE_SOURCES = ("operator", "unsubscribe")

_ATOM = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
)
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class RecipientError(ValueError):
    """An address, timezone or route Herald refuses; the message says why."""


# -- addresses -------------------------------------------------------------------------------


def _local_ok(local: str) -> bool:
    parts = local.split(".")
    return 1 <= len(local) <= 64 and all(p and set(p) <= _ATOM for p in parts)


def _domain_ok(domain: str) -> bool:
    labels = domain.split(".")
    if not 1 <= len(domain) <= 253 or (len(labels) < 2 and domain.lower() != "localhost"):
        return False
    return all(
        0 < len(label) <= 63 and set(label) <= _LABEL and label[0] != "-" and label[-1] != "-"
        for label in labels
    )


def parse_recipient(value: object, *, where: str = "address") -> tuple[str, str]:
    """(the address as given, for the To header; its bare form in lower case), or
    RecipientError saying why not. One address only: never a list, a group or a header.
    The error never quotes the value (it may come from a hostile row)."""
    if not isinstance(value, str):
        raise RecipientError(f"{where}: an address must be text, not {type(value).__name__}")
    if len(value) > MAX_ADDRESS_CHARS:
        raise RecipientError(f"{where}: longer than {MAX_ADDRESS_CHARS} characters")
    text = value.strip()
    if not text:
        raise RecipientError(f"{where}: empty")
    if any(ord(c) < 32 or ord(c) == 127 or c in FORBIDDEN_IN_HEADERS for c in text):
        raise RecipientError(f"{where}: holds a line break or a control character")
    name, addr = parseaddr(text)
    found = getaddresses([text])
    if len(found) != 1 or found[0] != (name, addr) or "@" not in addr or addr not in text:
        # (the parser drops spaces and comments: `a@exa mple.org` would become another address)
        raise RecipientError(f"{where}: not exactly one email address")
    local, _, domain = addr.rpartition("@")
    if not _local_ok(local) or not _domain_ok(domain):
        raise RecipientError(f"{where}: not a plain address such as name@host.example")
    if "@" in name or len(name) > MAX_NAME_CHARS:
        raise RecipientError(f"{where}: the display name must not hold an address")
    try:
        parse_address(text, where=where)  # as a configured recipient is checked
    except ConfigError:
        raise RecipientError(f"{where}: not a valid email address") from None
    return text, addr.lower()


@functools.lru_cache(maxsize=4096)
def bare(address: str) -> str:
    """The bare address in lower case (`Ops <OPS@x.org>` -> `ops@x.org`), for keys."""
    return parseaddr(address)[1].lower()


def check_timezone(name: object) -> str:
    try:
        zone(name)
    except ScheduleError as exc:
        raise RecipientError(str(exc)) from None
    assert isinstance(name, str)
    return name


def check_route(settings: Settings, name: object, *, digest: bool = False) -> str:
    """A configured route's name (with `digest`, a route in digest mode), else RecipientError."""
    routes = {r.name: r for r in settings.routes}
    if not isinstance(name, str) or name not in routes:
        known = ", ".join(sorted(routes)) or "none configured"
        raise RecipientError(f"unknown route {name!r:.80} (routes: {known})")
    if digest and routes[name].mode != "digest":
        raise RecipientError(f'route {name!r} is not in digest mode (mode = "digest")')
    return name


# -- the directory ---------------------------------------------------------------------------


def list_recipients(
    conn: DictConnection,
    now: datetime,
    *,
    muted_only: bool = False,
    after: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Recipients by address (after `after`), with their mutes in force at `now`."""
    return conn.execute(
        queries["recipients_list"],
        {"now": now, "muted": muted_only, "after": after, "limit": limit, "address": None},
    ).fetchall()


def get_recipient(conn: DictConnection, address: str, now: datetime) -> dict[str, Any] | None:
    rows = conn.execute(
        queries["recipients_list"],
        {"now": now, "muted": False, "after": None, "limit": 1, "address": address},
    ).fetchall()
    return rows[0] if rows else None


def set_recipient(
    conn: DictConnection,
    address: str,
    *,
    display_name: str | None = None,
    timezone: str | None = None,
    set_name: bool = False,
    set_timezone: bool = False,
) -> dict[str, Any]:
    """Create or update a directory entry; only the fields flagged `set_*` change."""
    if display_name is not None and (
        len(display_name) > MAX_NAME_CHARS
        or any(ord(c) < 32 or ord(c) == 127 or c in FORBIDDEN_IN_HEADERS for c in display_name)
    ):
        raise RecipientError(
            f"display name must be one line of at most {MAX_NAME_CHARS} characters"
        )
    if timezone is not None:
        check_timezone(timezone)
    row = conn.execute(
        queries["recipient_upsert"],
        {"address": address, "display_name": display_name, "timezone": timezone,
         "set_name": set_name, "set_timezone": set_timezone},
    ).fetchone()  # fmt: skip
    assert row is not None
    return row


def delete_recipient(conn: DictConnection, address: str) -> bool:
    return conn.execute(queries["recipient_delete"], {"address": address}).fetchone() is not None


def mute(
    conn: DictConnection,
    address: str,
    route: str = ALL_ROUTES,
    *,
    until: datetime | None = None,
    source: str = "operator",
) -> dict[str, Any]:
    """Mute `address` for `route` ('*': every route) until `until` (None: until unmuted);
    the directory entry is created when missing."""
    if source not in MUTE_SOURCES:
        raise ValueError(f"unknown mute source {source!r}")
    row = conn.execute(
        queries["recipient_mute"],
        {"address": address, "route": route, "until": until, "source": source},
    ).fetchone()
    assert row is not None
    return row


def unmute(conn: DictConnection, address: str, route: str | None = None) -> list[str]:
    """Lift the mutes of `address` (for one route, or all); the routes unmuted."""
    rows = conn.execute(
        queries["recipient_unmute"], {"address": address, "route": route}
    ).fetchall()
    return [r["route"] for r in rows]


def muted(conn: DictConnection, addresses: Iterable[str], now: datetime) -> set[tuple[str, str]]:
    """The (bare address, route) mutes in force at `now` among `addresses` (bare)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return set()
    rows = conn.execute(queries["active_mutes"], {"addresses": wanted, "now": now}).fetchall()
    return {(r["address"], r["route"]) for r in rows}


def is_muted(mutes: set[tuple[str, str]], address: str, route: str) -> bool:
    return (address, route) in mutes or (address, ALL_ROUTES) in mutes


def add_counters(conn: DictConnection, counts: Mapping[tuple[str, str], float]) -> None:
    """Add to the ledger's counters (herald.counters), in the caller's transaction."""
    rows = [{"metric": m, "label": label, "value": v} for (m, label), v in counts.items() if v]
    if rows:
        conn.execute(queries["add_counters"], {"counts": Jsonb(rows)})
