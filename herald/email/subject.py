"""What an email is called: the route's own `subject` template, or a default in words.

The default reads as a person would write it: ``Classes: "Welding basics" updated
(seats, status)``. The row is named by the route's ``label_field``, else by the first
of ``title``, ``name``, ``label``, ``subject``, ``email``, ``id`` it holds, else by its
key.

A route's ``subject`` is a Jinja2 template run in an immutable sandbox (no attribute
of Python internals, no mutation of the row). It is compiled, and its variables
checked, at start (`herald.templating.check_route_templates`); one that fails on a
given change (a missing column, a DELETE with no ``new``) gives way to the default
subject and the reason is returned for the ledger.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from herald.email.values import format_value, sanitize_header_text, shorten
from herald.email.view import ChangeView
from herald.templating import SUBJECT_VARIABLES, check_subject, subject_sandbox

__all__ = [
    "LABEL_FIELDS",
    "MAX_SUBJECT_CHARS",
    "SUBJECT_VARIABLES",
    "Label",
    "Mention",
    "compile_subject",
    "default_subject",
    "label_columns",
    "label_for",
    "render_subject",
    "subject_context",
]

MAX_SUBJECT_CHARS = 150
MAX_LABEL_CHARS = 60
#: Columns that name a row, in order of preference (after the route's label_field).
LABEL_FIELDS = ("title", "name", "label", "subject", "email", "id")
VERBS = {"INSERT": "created", "UPDATE": "updated", "DELETE": "deleted"}
_NAMES_IN_SUBJECT = 3


_SANDBOX = subject_sandbox({"readable": format_value})  # {{ change.changed_at | readable }}


@functools.lru_cache(maxsize=256)
def compile_subject(source: str) -> Template:
    """The sandboxed template; ``TemplateProblem`` when it can never render (refused at
    start by the same check)."""
    check_subject(source)
    return _SANDBOX.from_string(source)


@dataclass(frozen=True)
class Label:
    """What names a row: ``"Welding basics"`` (from a column) or ``#7`` (from its key)."""

    text: str
    quoted: bool
    column: str | None = None

    def __str__(self) -> str:
        return f'"{self.text}"' if self.quoted else self.text


def _names_a_row(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, bool | dict | list)


def label_columns(row: Mapping[str, Any] | None, preferred: str | None) -> list[str]:
    """Columns of ``row`` that can name it, best first (the route's label_field leads)."""
    if not row:
        return []
    candidates = ((preferred,) if preferred else ()) + LABEL_FIELDS
    return [c for c in dict.fromkeys(candidates) if _names_a_row(row.get(c))]


def _label_column(row: Mapping[str, Any] | None, preferred: str | None) -> str | None:
    """The first of `label_columns` (without listing the others)."""
    if not row:
        return None
    if preferred and _names_a_row(row.get(preferred)):
        return preferred
    return next((c for c in LABEL_FIELDS if _names_a_row(row.get(c))), None)


def _one_line(value: Any) -> str:
    return shorten(" ".join(format_value(value, 4 * MAX_LABEL_CHARS).split()), MAX_LABEL_CHARS)


def _label(value: Any, column: str | None) -> Label:
    """A number names a row as ``#7``; anything else in quotes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Label(f"#{value}", quoted=False, column=column)
    return Label(_one_line(value), quoted=True, column=column)


def label_for(
    row: Mapping[str, Any] | None, row_pk: Mapping[str, Any], preferred: str | None
) -> Label:
    column = _label_column(row, preferred)
    if column is not None and row is not None:
        return _label(row[column], column)
    if len(row_pk) == 1:
        return _label(next(iter(row_pk.values())), None)
    if row_pk:
        text = ", ".join(f"{_one_line(k)}={_one_line(v)}" for k, v in row_pk.items())
        return Label(shorten(text, MAX_LABEL_CHARS), quoted=False)
    return Label("a row", quoted=False)


@dataclass(frozen=True)
class Mention:
    """One change as a subject speaks of it."""

    table: str  # humanised: "Classes"
    row: tuple[str, str]  # which row: (table, key)
    label: Label
    operation: str
    changed: tuple[str, ...]  # changed columns (UPDATE), humanised


def _names(names: Sequence[str]) -> str:
    shown = [n if _is_acronym(n.partition(" ")[0]) else n[:1].lower() + n[1:] for n in names]
    more = len(shown) - _NAMES_IN_SUBJECT
    text = ", ".join(shown[:_NAMES_IN_SUBJECT])
    return f"{text}, +{more} more" if more > 0 else text


def _is_acronym(word: str) -> bool:
    return len(word) > 1 and word.isupper()


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _what_happened(mentions: Sequence[Mention]) -> str:
    verbs = list(dict.fromkeys(VERBS[m.operation] for m in mentions))
    changed = list(dict.fromkeys(c for m in mentions for c in m.changed))
    detail = f" ({_names(changed)})" if changed else ""
    if len(mentions) == 1:
        return verbs[0] + (detail if mentions[0].operation == "UPDATE" else "")
    if verbs == ["updated"]:
        return f"updated {_times(len(mentions))}{detail}"
    return f"{' and '.join(verbs)} ({len(mentions)} changes)"


def default_subject(mentions: Sequence[Mention], total: int) -> str:
    """The subject in words, for one change or a group (``total`` counts those not shown)."""
    rows = list(dict.fromkeys(m.row for m in mentions))
    tables = list(dict.fromkeys(m.table for m in mentions))
    where = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    if total > len(mentions):
        return sanitize_header_text(f"{where}: {total} changes", MAX_SUBJECT_CHARS)
    if len(rows) == 1:
        last = mentions[-1]
        text = f"{last.table}: {last.label} {_what_happened(mentions)}"
    elif len({m.operation for m in mentions}) == 1 and len(rows) == total and len(tables) == 1:
        text = f"{where}: {total} rows {VERBS[mentions[0].operation]}"
    elif len(tables) == 1:
        text = f"{where}: {total} changes to {len(rows)} rows"
    else:
        text = f"{where}: {total} changes"
    return sanitize_header_text(text, MAX_SUBJECT_CHARS)


def subject_context(
    changes: Sequence[ChangeView], *, route: str, label: Label, table: str
) -> dict[str, Any]:
    """What a route's subject template sees; for a group, the state before its first
    change (``old``) and after its last (``new``), and every column any of them changed."""
    first, last = changes[0], changes[-1]
    new = last.new_row
    old = first.old_row if first.operation != "INSERT" else None
    return {
        "change": {
            "operation": last.operation,
            "table": last.table,
            "id": last.change_id,
            "changed_at": last.changed_at,
            "row_pk": dict(last.row_pk),
        },
        "row": new if new is not None else (last.old_row or {}),
        "old": old,
        "new": new,
        "changed": list(dict.fromkeys(f.name for c in changes for f in c.fields)),
        "route": route,
        "label": label.text,
        "table": table,
        "count": len(changes),
    }


def render_subject(source: str, context: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(subject, None)``, or ``(None, why)`` when the template fails on this change."""
    try:
        text = compile_subject(source).render(context)
    except Exception as exc:  # anything a template can raise; the default subject takes over
        return None, f"{type(exc).__name__}: {sanitize_header_text(str(exc), 200)}"
    subject = sanitize_header_text(text, MAX_SUBJECT_CHARS)
    if not subject:
        return None, "it rendered an empty subject"
    return subject, None
