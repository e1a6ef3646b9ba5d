"""What one email shows of each change: its fields in words, its label, when it happened.

Everything here is text ready for a template: values formatted and bounded
(`herald.email.values`), names in words, an UPDATE's label fields added so a reader
knows which row changed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.email.subject import VERBS, Label, Mention, label_columns, label_for
from herald.email.values import format_value, humanise, humanise_table, readable_moment
from herald.email.view import ChangeView, FieldChange, canonical
from herald.errors import PermanentError

__all__ = ["MAX_FIELDS", "ChangeDisplay", "FieldDisplay", "display_change", "overview"]

MAX_NAME_CHARS = 200
MAX_KEY_VALUE_CHARS = 60
MAX_FIELDS = 200
"""Fields listed per change; a table with thousands of columns stays readable."""
_NAME_WIDTH = 24
_CAPTIONS = {"INSERT": "Details", "UPDATE": "What changed", "DELETE": "Last values"}


@dataclass(frozen=True)
class FieldDisplay:
    column: str  # as the table names it
    name: str  # in words: "Starts at"
    old: str
    new: str
    changed: bool  # False: a label field of an UPDATE, shown to say which row it is


@dataclass(frozen=True)
class ChangeDisplay:
    number: int
    change_id: int
    operation: str
    verb: str  # "Updated"
    table: str  # in words: "Classes"
    table_name: str  # as stored: "public.classes"
    key: str  # "id=7"
    label: str  # '"Welding basics"' or "#7"
    when: str  # "29 Nov 2026, 11:21 UTC"
    title: str  # a group's heading for this change
    caption: str  # "What changed"
    fields: list[FieldDisplay] = field(default_factory=list)
    more_fields: int = 0
    width: int = 0  # the plain-text column for values


def _key_label(row_pk: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{format_value(name, MAX_KEY_VALUE_CHARS)}={format_value(value, MAX_KEY_VALUE_CHARS)}"
        for name, value in row_pk.items()
    )


def _when(moment: Any) -> str:
    return readable_moment(moment) if isinstance(moment, datetime) else format_value(moment)


def _shown_fields(change: ChangeView, label_field: str | None) -> list[tuple[FieldChange, bool]]:
    """The fields an email lists, in column order; an UPDATE adds its label fields."""
    changed = change.fields
    if change.operation != "UPDATE":
        return [(fc, True) for fc in changed]
    new = change.new_row or {}
    labels = [c for c in label_columns(new, label_field) if c != "id"]
    if label_field in labels:  # the route's choice alone
        labels = [label_field]
    by_name = {fc.name: fc for fc in changed}
    shown: list[tuple[FieldChange, bool]] = []
    for name in change.column_names:
        if name in by_name:
            shown.append((by_name[name], True))
        elif name in labels:
            shown.append((FieldChange(name, new[name], new[name]), False))
    return shown


@functools.lru_cache(maxsize=1024)
def _column_words(name: str) -> tuple[str, str]:
    """A column's name as shown, and in words: the same in every email of its table."""
    column = format_value(name, MAX_NAME_CHARS)
    return column, humanise(column)


@functools.lru_cache(maxsize=256)
def _table_words(table: str) -> tuple[str, str]:
    """A table's name as stored (bounded), and in words."""
    stored = format_value(table, MAX_NAME_CHARS)
    return stored, humanise_table(stored)


def _field(change: ChangeView, fc: FieldChange, changed: bool) -> FieldDisplay:
    try:
        if isinstance(fc.name, str) and len(fc.name) <= MAX_NAME_CHARS:
            column, name = _column_words(fc.name)
        else:  # (a name too long to keep)
            column = format_value(fc.name, MAX_NAME_CHARS)
            name = humanise(column)
        return FieldDisplay(
            column=column,
            name=name,
            old=_shown_value(fc.old, change.operation == "INSERT"),
            new=_shown_value(fc.new, change.operation == "DELETE"),
            changed=changed,
        )
    except Exception as exc:
        raise PermanentError(
            f"cannot render notification: change {change.change_id} field "
            f"{format_value(str(fc.name), 60)!r}: {exc}"
        ) from exc


def _shown_value(value: Any, absent: bool) -> str:
    if absent:
        return ""
    if value is None:
        return "—"
    return format_value(value) if value != "" else "(empty)"


def display_change(
    change: ChangeView, number: int, label_field: str | None, one_row: bool
) -> tuple[ChangeDisplay, Mention]:
    label = label_for(change.new_row or change.old_row, change.row_pk, label_field)
    shown = _shown_fields(change, label_field)
    fields = [_field(change, fc, changed) for fc, changed in shown[:MAX_FIELDS]]
    if isinstance(change.table, str) and len(change.table) <= MAX_NAME_CHARS:
        table_name, table = _table_words(change.table)
    else:
        table_name = format_value(change.table, MAX_NAME_CHARS)
        table = humanise_table(table_name)
    verb = VERBS[change.operation]
    key = _key_label(change.row_pk)
    display = ChangeDisplay(
        number=number,
        change_id=change.change_id,
        operation=change.operation,
        verb=verb.capitalize(),
        table=table,
        table_name=table_name,
        key=key,
        label=str(label),
        when=_when(change.changed_at),
        title=verb.capitalize() if one_row else f"{table}: {label} {verb}",
        caption=_CAPTIONS[change.operation],
        fields=fields,
        more_fields=len(shown) - len(fields),
        width=min(max((len(f.name) for f in fields), default=0), _NAME_WIDTH) + 1,
    )
    changed = tuple(f.name for f in fields if f.changed) if change.operation == "UPDATE" else ()
    return display, Mention(table, (change.table, key), label, change.operation, changed)


def _span(first: Any, last: Any) -> str:
    """``29 Nov 2026, 11:21 to 11:40 UTC``, or both moments in full."""
    if isinstance(first, datetime) and isinstance(last, datetime):
        a, b = readable_moment(first), readable_moment(last)
        if a == b:
            return a
        day_a, _, clock_a = a.partition(", ")
        day_b, _, clock_b = b.partition(", ")
        if day_a == day_b:
            return f"{day_a}, {clock_a.removesuffix(' UTC')} to {clock_b}"
        return f"{a} to {b}"
    return f"{_when(first)} to {_when(last)}"


def overview(
    changes: Sequence[ChangeView], shown: Sequence[ChangeDisplay], label: Label, one_row: bool
) -> dict[str, str]:
    """The headline, kicker, byline and footer of one email."""
    total, first, last = len(changes), shown[0], shown[-1]
    tables = list(dict.fromkeys(d.table for d in shown))
    kicker = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    if total == 1:
        return {
            "headline": label.text,
            "kicker": kicker,
            "byline": f"{first.verb} {first.when}",
            "footer": f"{first.table_name}, {first.key}, change #{first.change_id}",
        }
    if one_row:
        return {
            "headline": label.text,
            "kicker": kicker,
            "byline": f"{total} changes, {_span(changes[0].changed_at, changes[-1].changed_at)}",
            "footer": f"{first.table_name}, {first.key}, "
            f"changes #{first.change_id} to #{last.change_id}",
        }
    rows = len({(c.table, canonical(c.row_pk)) for c in changes})
    return {
        "headline": f"{total} changes",
        "kicker": kicker,
        "byline": f"{rows} rows, {_span(changes[0].changed_at, changes[-1].changed_at)}",
        "footer": "",
    }
