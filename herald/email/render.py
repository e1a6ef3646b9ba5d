"""Turn change-log rows into a bounded, injection-safe email.

Row values are hostile input: any JSON, any size, any characters. Everything a
template shows is prepared here first (formatted, truncated, control characters
made visible), so templates stay dumb and a 10 MB value still renders a small
email. Anything that reaches a header is sanitised here; `herald.email.mime` then
writes the message and checks its headers as serialised bytes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)

from herald.errors import PermanentError

__all__ = [
    "MAX_CHANGES",
    "MAX_FIELDS",
    "MAX_SUBJECT_CHARS",
    "MAX_SUMMARY_CHARS",
    "MAX_VALUE_CHARS",
    "OPERATIONS",
    "ChangeView",
    "FieldChange",
    "RenderedEmail",
    "format_value",
    "render_notification",
    "sanitize_header_text",
]

OPERATIONS = frozenset({"INSERT", "UPDATE", "DELETE"})

MAX_VALUE_CHARS = 500
"""Longest single value shown; the rest is replaced by a truncation note."""
MAX_NAME_CHARS = 200
MAX_KEY_VALUE_CHARS = 60
"""Row-key values also reach the subject, so they are kept short."""
MAX_FIELDS = 200
"""Fields listed per change; a table with thousands of columns stays readable."""
MAX_CHANGES = 100
"""Changes listed per email (a digest or debounce group can be large)."""
MAX_SUMMARY_CHARS = 10_000
MAX_SUBJECT_CHARS = 150

_TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Bidirectional overrides and isolates can reorder what a reader sees.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZWSP = "\u200b"


@dataclass(frozen=True)
class FieldChange:
    """One column as shown in an email: ``old`` is None for INSERT, ``new`` for DELETE."""

    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ChangeView:
    """One ``herald.change_log`` row, as the renderer needs it."""

    change_id: int
    table: str
    operation: str
    row_pk: dict[str, Any]
    old_row: dict[str, Any] | None
    new_row: dict[str, Any] | None
    changed_at: datetime

    def __post_init__(self) -> None:
        # A malformed row must fail with a reason, not halfway through a template.
        if self.operation not in OPERATIONS:
            raise PermanentError(f"change {self.change_id}: unknown operation {self.operation!r}")
        for name in ("row_pk", "old_row", "new_row"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise PermanentError(
                    f"change {self.change_id}: {name} is {type(value).__name__}, not an object"
                )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ChangeView:
        """Build from a change_log row (keys ``id``, ``table_name``, ``operation``, ...)."""
        try:
            return cls(
                change_id=int(record["id"]),
                table=str(record["table_name"]),
                operation=str(record["operation"]),
                row_pk=dict(record.get("row_pk") or {}),
                old_row=record.get("old_row"),
                new_row=record.get("new_row"),
                changed_at=record["changed_at"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed change record: {exc!r}") from exc

    @property
    def fields(self) -> list[FieldChange]:
        """UPDATE: only the fields whose value changed; INSERT/DELETE: every field."""
        old = self.old_row or {}
        new = self.new_row or {}
        if self.operation == "INSERT":
            return [FieldChange(name, None, value) for name, value in new.items()]
        if self.operation == "DELETE":
            return [FieldChange(name, value, None) for name, value in old.items()]
        names = list(new) + [name for name in old if name not in new]
        return [
            FieldChange(name, old.get(name), new.get(name))
            for name in names
            if not _same(old.get(name), new.get(name))
        ]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1`` and ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        return _canonical(a) == _canonical(b)
    return bool(a == b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(truncated, {len(text)} chars)"


def _visible(text: str) -> str:
    """Body-safe text: keep newlines and tabs, show other control characters as escapes."""
    text = _SURROGATES.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for ch in text:
        if ch in "\n\t":
            out.append(ch)
        elif ch in "\u2028\u2029":
            out.append("\n")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def format_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """Compact display of one JSON value: strings as they are, the rest as JSON.

    Truncated to ``limit`` characters before anything else touches it, so work
    downstream is bounded. Raises ``TypeError`` for values that are not JSON.
    """
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=_json_default)
    return _visible(_truncate(text, limit))


def sanitize_header_text(text: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """One safe header line: control and separator characters become spaces.

    Whitespace is collapsed, encoded-word syntax (``=?``) is broken with a
    zero-width space so mail clients show it literally, and the result is cut
    to ``limit`` characters.
    """
    text = _SURROGATES.sub("\ufffd", text)
    chars = [
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Zs") or ch in _BIDI else ch
        for ch in text
    ]
    text = " ".join("".join(chars).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace("=?", f"={_ZWSP}?")


@dataclass(frozen=True)
class _FieldDisplay:
    name: str
    old: str
    new: str


@dataclass(frozen=True)
class _ChangeDisplay:
    change_id: int
    table: str
    operation: str
    key: str
    changed_at: str
    fields: list[_FieldDisplay] = field(default_factory=list)
    more_fields: int = 0


def _key_label(row_pk: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{format_value(name, MAX_KEY_VALUE_CHARS)}={format_value(value, MAX_KEY_VALUE_CHARS)}"
        for name, value in row_pk.items()
    )


def _display(change: ChangeView) -> _ChangeDisplay:
    all_fields = change.fields
    shown = all_fields[:MAX_FIELDS]
    fields = []
    for fc in shown:
        try:
            fields.append(
                _FieldDisplay(
                    name=format_value(fc.name, MAX_NAME_CHARS),
                    old=format_value(fc.old),
                    new=format_value(fc.new),
                )
            )
        except Exception as exc:
            raise PermanentError(
                f"cannot render notification: change {change.change_id} field "
                f"{format_value(str(fc.name), 60)!r}: {exc}"
            ) from exc
    changed_at = change.changed_at
    return _ChangeDisplay(
        change_id=change.change_id,
        table=format_value(change.table, MAX_NAME_CHARS),
        operation=change.operation,
        key=_key_label(change.row_pk),
        changed_at=changed_at.isoformat(timespec="seconds")
        if isinstance(changed_at, datetime)
        else format_value(changed_at),
        fields=fields,
        more_fields=len(all_fields) - len(shown),
    )


def _subject_parts(changes: Sequence[_ChangeDisplay], total: int) -> dict[str, str]:
    """``heading`` ("UPDATE" / "3 changes"), ``tables`` and ``key`` (empty when mixed)."""
    tables = list(dict.fromkeys(c.table for c in changes))
    keys = {(c.table, c.key) for c in changes}
    heading = changes[0].operation if total == 1 else f"{total} changes"
    if len(tables) == 1:
        table_label = tables[0]
    elif len(tables) <= 3:
        table_label = ", ".join(tables)
    else:
        table_label = f"{len(tables)} tables"
    key = changes[0].key if len(keys) == 1 and total == len(changes) else ""
    return {
        "heading": sanitize_header_text(heading, 40),
        "tables": sanitize_header_text(table_label, 80),
        "key": sanitize_header_text(key, 80),
    }


_environment: Environment | None = None


def _env() -> Environment:
    global _environment
    if _environment is None:
        _environment = Environment(
            loader=PackageLoader("herald.email", "templates"),
            auto_reload=False,  # templates ship with the code: no stat() per email
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _environment


def render_notification(
    changes: Sequence[ChangeView],
    *,
    summary: str | None,
    summary_note: str | None,
    route: str,
    template: str = "notification",
) -> RenderedEmail:
    """Render ``<template>.subject.txt``, ``.txt`` and ``.html`` for these changes.

    Raises ``PermanentError("cannot render notification: ...")`` for anything
    that cannot be shown: retrying would render the same failure again.
    """
    if not changes:
        raise PermanentError("cannot render notification: no changes")
    if not _TEMPLATE_NAME.fullmatch(template):
        raise PermanentError(f"cannot render notification: bad template name {template!r}")
    try:
        displays = [_display(c) for c in changes[:MAX_CHANGES]]
        context: dict[str, Any] = {
            "changes": displays,
            "count": len(changes),
            "more_changes": len(changes) - len(displays),
            "summary": _visible(_truncate(summary, MAX_SUMMARY_CHARS)) if summary else None,
            "summary_note": sanitize_header_text(summary_note, 200) if summary_note else None,
            "route": sanitize_header_text(route, 200),
            **_subject_parts(displays, len(changes)),
        }
        env = _env()
        subject = env.get_template(f"{template}.subject.txt").render(context)
        text = env.get_template(f"{template}.txt").render(context)
        html = env.get_template(f"{template}.html").render(context)
    except PermanentError:
        raise
    except TemplateError as exc:
        raise PermanentError(
            f"cannot render notification: template {template!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        raise PermanentError(f"cannot render notification: {type(exc).__name__}: {exc}") from exc
    return RenderedEmail(subject=sanitize_header_text(subject), text=text, html=html)
