"""`herald recipients list|set|mute|unmute` and `herald digests list|set|pause|resume|delete`.

The recipient directory (display name, timezone, mutes) and digest schedules, as the
HTTP API has them (`/api/recipients`, `/api/digest-schedules`); the work is done by
herald/recipients.py and herald/digests/store.py. An address, timezone, route or
schedule Herald refuses is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from herald import recipients
from herald.cli.database import database_settings, open_herald
from herald.cli.output import dump_json, format_table
from herald.config import Settings
from herald.digests import store
from herald.recipients import ALL_ROUTES, RecipientError

Handler = Callable[[argparse.Namespace], int]
_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_recipient_commands(sub: argparse._SubParsersAction) -> None:
    """Register `herald recipients …` and `herald digests …`."""
    _recipients(sub)
    _digests(sub)


def _run(command: str, func: Callable[[argparse.Namespace, Settings, Any], int]) -> Handler:
    """Open the database, run, commit; a refusal is one line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        settings = database_settings()
        try:
            with open_herald(settings, autocommit=False) as conn:
                code = func(args, settings, conn)
                conn.commit()
                return code
        except (RecipientError, store.ScheduleNotFound) as exc:
            print(f"herald {command}: {exc}", file=sys.stderr)
            return 1

    return run


def _address(text: str) -> str:
    try:
        return recipients.parse_recipient(text, where="address")[1]
    except RecipientError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _duration(text: str) -> timedelta:
    found = _DURATION.fullmatch(text.strip().lower())
    if not found:
        raise argparse.ArgumentTypeError(f"not a duration such as 30m, 8h, 3d or 2w: {text!r}")
    return timedelta(seconds=int(found[1]) * _UNITS[found[2]])


def _now() -> datetime:
    return datetime.now(UTC)


# -- herald recipients ------------------------------------------------------------------------


def _recipients(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("recipients", help="the recipient directory: timezones and mutes")
    commands = parser.add_subparsers(dest="recipients_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="recipients, with their mutes in force")
    listing.add_argument("--muted", action="store_true", help="only recipients muted somewhere")
    listing.add_argument("--limit", type=int, default=500, help="at most this many (500)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_run("recipients list", cmd_recipients_list))

    setting = commands.add_parser("set", help="create or change a recipient")
    setting.add_argument("address", type=_address, help="the recipient's email address")
    setting.add_argument("--name", help="display name in the To header ('' removes it)")
    setting.add_argument("--timezone", help="IANA timezone of their digests ('' removes it)")
    setting.add_argument("--json", action="store_true", help="print JSON")
    setting.set_defaults(func=_run("recipients set", cmd_recipients_set))

    muting = commands.add_parser("mute", help="send a recipient nothing from a route, or any")
    muting.add_argument("address", type=_address, help="the recipient's email address")
    muting.add_argument("--route", default=ALL_ROUTES, help="one route (default: every route)")
    until = muting.add_mutually_exclusive_group()
    until.add_argument("--until", type=_moment, help="until this time (ISO 8601; UTC if no zone)")
    until.add_argument("--for", dest="duration", type=_duration, help="for 30m, 8h, 3d, 2w")
    muting.set_defaults(func=_run("recipients mute", cmd_recipients_mute))

    unmuting = commands.add_parser("unmute", help="lift a recipient's mutes")
    unmuting.add_argument("address", type=_address, help="the recipient's email address")
    unmuting.add_argument("--route", help="one route's mute (default: all of them)")
    unmuting.set_defaults(func=_run("recipients unmute", cmd_recipients_unmute))


def _mutes(row: dict[str, Any]) -> str:
    parts = []
    for m in row["mutes"]:
        route = "all routes" if m["route"] == ALL_ROUTES else m["route"]
        parts.append(f"{route} until {m['until'][:16]}" if m["until"] else route)
    return ", ".join(parts) or "-"


def cmd_recipients_list(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    rows = recipients.list_recipients(conn, _now(), muted_only=args.muted, limit=args.limit)
    if args.json:
        print(dump_json(rows))
    elif not rows:
        print("no recipients")
    else:
        table = [(r["address"], r["display_name"], r["timezone"], _mutes(r)) for r in rows]
        print(format_table(("address", "name", "timezone", "muted"), table))
    return 0


def cmd_recipients_set(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    row = recipients.set_recipient(
        conn,
        args.address,
        display_name=args.name or None,
        timezone=args.timezone or None,
        set_name=args.name is not None,
        set_timezone=args.timezone is not None,
    )
    if args.timezone is not None:  # their digests follow it from the next due time on
        store.reconcile(conn, settings, _now())
    print(dump_json(row) if args.json else f"{row['address']}: name {row['display_name'] or '-'}, "
          f"timezone {row['timezone'] or '- (the route’s)'}")  # fmt: skip
    return 0


def cmd_recipients_mute(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    route = args.route if args.route == ALL_ROUTES else recipients.check_route(settings, args.route)
    until = args.until or (_now() + args.duration if args.duration else None)
    recipients.mute(conn, args.address, route, until=until)
    where = "every route" if route == ALL_ROUTES else f"route {route}"
    print(f"muted {args.address} for {where}" + (f" until {until.isoformat()}" if until else ""))
    return 0


def cmd_recipients_unmute(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    lifted = recipients.unmute(conn, args.address, args.route)
    if not lifted:
        raise RecipientError(f"{args.address} is not muted" + (
            f" for route {args.route}" if args.route else ""))  # fmt: skip
    print(f"unmuted {args.address}: {', '.join(lifted)}")
    return 0


# -- herald digests ---------------------------------------------------------------------------


def _digests(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("digests", help="digest schedules: each recipient's calendar")
    commands = parser.add_subparsers(dest="digests_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="digest schedules and when each is next due")
    listing.add_argument("--route", help="only this digest route's schedules")
    listing.add_argument("--recipient", type=_address, help="only this recipient's schedules")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_run("digests list", cmd_digests_list))

    setting = commands.add_parser("set", help="a recipient's own schedule for a digest route")
    setting.add_argument("address", type=_address, help="the recipient's email address")
    setting.add_argument("schedule", nargs="?", help="'daily 09:00', 'weekly mon 09:00', "
                         "'monthly 31 09:00' (default: the route's)")  # fmt: skip
    setting.add_argument("--route", help="the digest route (needed when there are several)")
    setting.add_argument("--timezone", help="IANA timezone (default: the recipient's)")
    setting.add_argument("--operations", help="only these, e.g. INSERT,UPDATE")
    setting.add_argument("--tables", help="only these tables, e.g. classes,members")
    setting.add_argument("--json", action="store_true", help="print JSON")
    setting.set_defaults(func=_run("digests set", cmd_digests_set))

    changes = (
        ("pause", "send nothing until resumed (items keep collecting)"),
        ("resume", "send again; next due computed from now"),
        ("delete", "drop the recipient's own schedule: the route's again"),
    )
    for name, text in changes:
        command = commands.add_parser(name, help=text)
        command.add_argument("address", type=_address, help="the recipient's email address")
        command.add_argument("--route", help="the digest route (needed when there are several)")
        command.set_defaults(func=_run(f"digests {name}", cmd_digests_change))


def _digest_route(settings: Settings, given: str | None) -> str:
    if given is not None:
        return recipients.check_route(settings, given, digest=True)
    routes = [r.name for r in settings.routes if r.mode == "digest"]
    if len(routes) != 1:
        raise RecipientError(
            "name the digest route with --route" if routes else "no route is in digest mode"
        )
    return routes[0]


def _schedule_table(rows: list[dict[str, Any]]) -> str:
    return format_table(
        ("id", "route", "recipient", "schedule", "timezone", "next due", "state"),
        [
            (
                r["id"],
                r["route"],
                r["recipient"],
                r["schedule"],
                r["timezone"],
                r["next_due_at"],
                "paused"
                if r["paused"]
                else "own"
                if r["own_schedule"] or r["own_timezone"]
                else "route's",
            )
            for r in rows
        ],  # fmt: skip
        right=(0,),
    )


def cmd_digests_list(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    rows = store.list_schedules(conn, route=args.route, recipient=args.recipient, limit=10_000)
    if args.json:
        print(dump_json(rows))
    else:
        print(_schedule_table(rows) if rows else "no digest schedules")
    return 0


def _names(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def cmd_digests_set(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    route = _digest_route(settings, args.route)
    given: dict[str, Any] = {}
    if args.schedule is not None:
        given["schedule"] = args.schedule
    if args.timezone is not None:
        given["timezone"] = args.timezone or None
    if args.operations is not None:
        given["operations"] = _names(args.operations)
    if args.tables is not None:
        given["tables"] = _names(args.tables)
    row = store.set_schedule(conn, settings, route, args.address, store.Change(**given), _now())
    print(dump_json(row) if args.json else _schedule_table([row]))
    return 0


def cmd_digests_change(args: argparse.Namespace, settings: Settings, conn: Any) -> int:
    route = _digest_route(settings, args.route)
    found = store.list_schedules(conn, route=route, recipient=args.address, limit=1)
    if not found:
        raise store.ScheduleNotFound(f"{args.address} has no digest schedule for route {route}")
    command = args.digests_command
    if command == "delete":
        row = store.delete_schedule(conn, settings, found[0]["id"], _now())
        print(f"{args.address}: back to route {route}'s schedule" if row else "deleted")
        return 0
    change = store.Change(paused=command == "pause")
    row = store.set_schedule(conn, settings, route, args.address, change, _now())
    print(_schedule_table([row]))
    return 0
