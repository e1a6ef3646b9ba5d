"""Turn change-log rows into a bounded, injection-safe email.

Row values are hostile input: any JSON, any size, any characters. Everything a
template shows is prepared here first (formatted, truncated, control characters
made visible), so templates stay dumb and a 10 MB value still renders a small
email. Anything that reaches a header is sanitised again and the finished
message is checked as serialised bytes, because Python's ``email`` package
decodes RFC 2047 encoded words on assignment and can emit a bare line feed.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from typing import Any
from uuid import UUID

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)

from orchestrator.errors import PermanentError

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
    "build_message",
    "format_value",
    "message_id_for",
    "parse_address",
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
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Bidirectional overrides and isolates can reorder what a reader sees.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0", "\u2028", "\u2029", "\x85")
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


class _CachedHeaderRegistry(HeaderRegistry):
    """``HeaderRegistry`` building each header class once.

    The stock registry creates a new class with ``type()`` on every header it makes
    (about a third of ``build_message``'s time); the classes are the same every time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


#: ``email.policy.SMTP`` and ``email.policy.default`` with the caching header registry.
_POLICY = email.policy.SMTP.clone(header_factory=_CachedHeaderRegistry())
_PARSE_POLICY = email.policy.default.clone(header_factory=_CachedHeaderRegistry())


_environment: Environment | None = None


def _env() -> Environment:
    global _environment
    if _environment is None:
        _environment = Environment(
            loader=PackageLoader("orchestrator", "templates"),
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


def message_id_for(notification_id: int, recipient: str, domain: str) -> str:
    """The Message-ID for one notification and recipient, the same on every attempt.

    A duplicate send (worker died after the server accepted) then carries the
    same id, so receiving systems can drop it. The recipient is hashed so the
    header reveals nothing about who else received the notification.
    """
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", domain):
        raise PermanentError(f"Message-ID domain {domain!r} is not a plain host name")
    digest = hashlib.sha256(recipient.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<herald.n{int(notification_id)}.{digest}@{domain}>"


def _reject_line_breaks(header: str, value: str) -> None:
    for ch in _FORBIDDEN_IN_HEADERS:
        if ch in value:
            raise PermanentError(f"{header} header contains a forbidden character U+{ord(ch):04X}")


def parse_address(value: str, *, header: str = "address") -> Address:
    """Exactly one address (with optional display name), or ``PermanentError`` naming ``header``."""
    _reject_line_breaks(header, value)
    found = email.utils.getaddresses([value])
    if len(found) != 1:
        raise PermanentError(f"{header} header must hold exactly one address: {value!r}")
    name, addr = found[0]
    if "@" not in addr:
        raise PermanentError(f"{header} header has no valid address: {value!r}")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, TypeError) as exc:  # email.errors defects are ValueErrors
        raise PermanentError(f"{header} header has an invalid address {value!r}: {exc}") from exc


_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "X-Herald-Change-Id",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    )
)


def build_message(
    rendered: RenderedEmail,
    *,
    mail_from: str,
    recipient: str,
    message_id: str,
    change_ids: Sequence[int],
    extra_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with Herald's headers.

    Every header-bound value is rejected with ``PermanentError`` naming the
    header if it carries a line break or NUL, and the serialised headers are
    parsed back and checked, so nothing can add a header or a recipient.
    The SMTP envelope is never taken from these headers: pass it to the mailer.
    """
    _reject_line_breaks("Subject", rendered.subject)
    _reject_line_breaks("Message-ID", message_id)
    if not re.fullmatch(r"<[^<>\s@]+@[^<>\s@]+>", message_id):
        raise PermanentError(f"Message-ID header is not <local@domain>: {message_id!r}")
    ids = list(change_ids)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise PermanentError(f"X-Herald-Change-Id header needs integer change ids: {ids!r}")

    msg = EmailMessage(policy=_POLICY)
    msg["Message-ID"] = message_id
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["From"] = parse_address(mail_from, header="From")
    msg["To"] = parse_address(recipient, header="To")
    msg["Subject"] = rendered.subject
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Herald-Change-Id"] = ",".join(str(i) for i in ids)
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise PermanentError(f"extra header name {name!r} is not allowed")
        _reject_line_breaks(name, value)
        msg[name] = value
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    _check_serialised_headers(msg)
    return msg


_BARE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n|\0")


def _check_serialised_headers(msg: EmailMessage) -> None:
    """Read each header back as a receiver would and demand what we set, unbroken.

    The ``email`` package decodes ``=?UTF-8?Q?=0A?=`` in a display name and can
    write a raw line feed; a receiver decoding a literal encoded word in the
    subject would show one. Both are refused here.

    Each header is folded as it will be written and checked on its own (the body
    plays no part in it): no bare CR, LF or NUL; exactly one header of the name we
    set (its first line starts with the name, every other line is a continuation,
    which is what a parser needs to see the same header list); and its value, parsed
    and decoded by ``email.policy.default`` as a receiver would, holds no line break,
    NUL or other control character. A header with nothing to decode (no ``=?``, no
    ``*``) is checked as the unfolded text itself, without the parser's cost.
    """
    for name, value in msg.items():
        folded = msg.policy.fold_binary(name, value)
        if _BARE_BREAK.search(folded):
            raise PermanentError(f"{name} header would be written with a bare line break or NUL")
        lines = folded.decode("ascii", "surrogateescape").split("\r\n")
        if lines[-1] == "":
            lines.pop()
        first, rest = lines[0] if lines else "", lines[1:]
        if (
            first.split(":", 1)[0].lower() != name.lower()
            or ":" not in first
            or any(not line or line[0] not in " \t" for line in rest)
        ):
            raise PermanentError("message headers do not survive serialisation unchanged")
        parsed_name, raw = _PARSE_POLICY.header_source_parse([line + "\r\n" for line in lines])
        if b"=?" in folded or b"*" in folded:
            # Encoded words (RFC 2047) or parameter encodings (RFC 2231): decode as a
            # receiver would, and check what comes out.
            text = str(_PARSE_POLICY.header_fetch_parse(parsed_name, raw))
        else:
            # Nothing to decode: every character a parser could give back is in the
            # unfolded text itself, so checking that text is at least as strict.
            text = raw.replace("\r\n", "")
        _reject_line_breaks(name, text)
        if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text):
            raise PermanentError(f"{name} header contains a control character")
