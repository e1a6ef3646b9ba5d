"""How one value reads in an email: bounded, control characters visible, dates in words.

Row values are hostile input: any JSON, any size, any characters. Each is cut to a
bound before anything else touches it, so a 10 MB value costs no more than a short
one. Dates and times are recognised by a strict, anchored pattern on short strings
only (no backtracking, nothing scanned past 40 characters) and shown as a person
writes them: ``29 Nov 2026, 11:21 UTC``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from herald.headers import FORBIDDEN_IN_HEADERS

__all__ = [
    "MAX_VALUE_CHARS",
    "format_value",
    "humanise",
    "humanise_table",
    "readable_moment",
    "sanitize_header_text",
    "shorten",
    "truncate",
    "visible",
]

MAX_VALUE_CHARS = 500
"""Longest single value shown; the rest is replaced by a truncation note."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONGEST_MOMENT = 40
# Anchored (fullmatch) and free of nested quantifiers: linear on any input.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Bidirectional overrides and isolates can reorder what a reader sees.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZWSP = "\u200b"
_HEADER_BLANKS = frozenset(FORBIDDEN_IN_HEADERS) | _BIDI
# What `visible` changes: control characters (category Cc is exactly U+0000-U+001F and
# U+007F-U+009F) but newline and tab, CR, line and paragraph separators, bidi, surrogates.
_NOT_VISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(truncated, {len(text)} chars)"


def shorten(text: str, limit: int) -> str:
    """Cut to ``limit`` characters with an ellipsis (for labels, where a note is too long)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def visible(text: str) -> str:
    """Body-safe text: keep newlines and tabs, show other control characters as escapes."""
    if _NOT_VISIBLE.search(text) is None:  # nearly every value: nothing to change
        return text
    return _visible_each(text)


def _visible_each(text: str) -> str:
    """`visible`, character by character (for text holding something to change)."""
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


def readable_moment(value: datetime | date | time) -> str:
    """``29 Nov 2026, 11:21 UTC``: aware times in UTC, seconds only when there are some."""
    if isinstance(value, datetime):
        zone = ""
        if value.tzinfo is not None and value.utcoffset() is not None:
            value, zone = value.astimezone(UTC), " UTC"
        return f"{value.day} {_MONTHS[value.month - 1]} {value.year}, {_clock(value)}{zone}"
    if isinstance(value, date):
        return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
    return _clock(value)


def _clock(value: datetime | time) -> str:
    clock = f"{value.hour:02d}:{value.minute:02d}"
    return f"{clock}:{value.second:02d}" if value.second else clock


def _moment(text: str) -> str | None:
    """``text`` read as a date, a date and time, or a time of day; None when it is not one."""
    if len(text) > _LONGEST_MOMENT or not text[:1].isdigit():
        return None
    try:
        if _DATETIME.fullmatch(text):
            return readable_moment(datetime.fromisoformat(text.replace(" ", "T", 1)))
        if _DATE.fullmatch(text):
            return readable_moment(date.fromisoformat(text))
        if _TIME.fullmatch(text):
            return readable_moment(time.fromisoformat(text))
    except ValueError:  # 2026-13-45 has the shape of a date and is not one
        return None
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


#: ``json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=_json_default)``
#: without a new encoder per call (the encoder keeps no state between calls).
_TO_JSON = json.JSONEncoder(
    ensure_ascii=False, separators=(", ", ": "), default=_json_default
).encode


def format_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """Display of one value: dates in words, other strings as they are, the rest as JSON.

    Truncated to ``limit`` characters before anything else touches it, so work
    downstream is bounded. Raises ``TypeError`` for values that are not JSON.
    """
    if type(value) is int:
        text = str(value)  # what JSON writes for an int
    elif isinstance(value, datetime | date | time):
        return readable_moment(value)
    elif isinstance(value, str):
        text = _moment(value) or value
    else:
        text = _TO_JSON(value)
    return visible(truncate(text, limit))


def humanise(name: str) -> str:
    """A column name as words: ``coach_id`` -> ``Coach ID``, ``starts_at`` -> ``Starts at``."""
    words = name.replace("_", " ").replace("-", " ").split()
    if not words:
        return name
    words = ["ID" if w.lower() == "id" else w for w in words]
    first = words[0]
    words[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(words)


def _unquote(identifier: str) -> str:
    if len(identifier) > 1 and identifier[0] == identifier[-1] == '"':
        return identifier[1:-1].replace('""', '"')
    return identifier


def humanise_table(name: str) -> str:
    """A table name as words, schema left out: ``public.class_sessions`` -> ``Class sessions``.

    The change log writes ``schema.table`` with PostgreSQL's quoting (``%I.%I``), so a
    quoted schema may hold a dot: the table starts after the schema's closing quote.
    """
    if name.startswith('"'):
        end = 1
        while (end := name.find('"', end)) != -1 and name[end + 1 : end + 2] == '"':
            end += 2  # a doubled quote is a quote inside the name
        schema_end = end + 1 if end != -1 else 0
    else:
        schema_end = name.find(".")
    table = name
    if schema_end > 0 and name[schema_end : schema_end + 1] == ".":
        table = name[schema_end + 1 :]
    return humanise(_unquote(table)) or name


def sanitize_header_text(text: str, limit: int = 150) -> str:
    """One safe header line: line breaks, control and separator characters become spaces.

    What may never reach a header is `herald.headers.FORBIDDEN_IN_HEADERS`; other
    control and separator characters go too. Whitespace is collapsed, encoded-word
    syntax (``=?``) is broken with a zero-width space so mail clients show it
    literally, and the result is cut to ``limit`` characters. Only the first
    ``4 * limit`` characters are read, so a huge value costs no more than a short one.
    """
    text = text[: 4 * limit + 64]
    if not (text.isascii() and text.isprintable()):  # printable ASCII: nothing to blank
        text = _SURROGATES.sub("\ufffd", text)
        text = "".join(
            " " if ch in _HEADER_BLANKS or unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Zs")
            else ch
            for ch in text
        )  # fmt: skip
    text = shorten(" ".join(text.split()), limit)
    return text.replace("=?", f"={_ZWSP}?")
