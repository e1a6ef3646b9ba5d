"""How the operator commands print: plain-text tables for people, JSON for scripts.

Shared by `herald jobs`, `herald stats`, `herald recipients` and `herald digests`. An
error the operator can fix (an unknown job, a job in the wrong state) is one line on
stderr and exit status 1 (`operator_errors`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from herald.ledger import STATUSES
from monitoring import inspect

#: Longest text shown in a table cell (`--json` and `jobs show` print everything).
MAX_CELL = 48

Handler = Callable[[argparse.Namespace], int]


def connect(*, autocommit: bool = True) -> Any:
    """The database of HERALD_DATABASE_URL with the herald schema up to date, or one line
    saying why not (`herald.cli.database`); no broker needed."""
    from herald.cli.database import database_settings, open_herald

    return open_herald(database_settings(), autocommit=autocommit)


def operator_errors(command: str, func: Handler) -> Handler:
    """Run a command; an `OperatorError` becomes one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except inspect.OperatorError as exc:
            print(f"herald {command}: {exc}", file=sys.stderr)
            return 1

    return run


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dump_json(value: Any) -> str:
    return json.dumps(value, default=json_default, indent=2)


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def cell(value: Any, width: int = MAX_CELL) -> str:
    """One table cell: `-` for nothing, times in UTC, one line, at most `width` characters."""
    if value is None:
        return "-"
    text = fmt_time(value) if isinstance(value, datetime) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()
) -> str:
    """A plain-text table; columns whose index is in `right` are right-aligned."""
    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    align = set(right)

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(widths[i]) if i in align else v.ljust(widths[i]) for i, v in enumerate(values)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def status_arg(text: str) -> str:
    if text not in STATUSES:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r} (choose from {', '.join(STATUSES)})"
        )
    return text
