"""A digest as an email a person wants to read: what happened in the period, newest first.

The triplet `digest.subject.txt`, `digest.txt` and `digest.html` (packaged, or yours in
`[mail] templates_dir`) is given, all prepared and bounded here as for single emails
(herald/email/display.py formats each change):

- ``subject``, ``heading`` (``30 changes to Classes``), ``period`` (in the schedule's
  timezone), ``schedule``, ``timezone``, ``frequency`` (``Daily``), ``route``;
- ``overview`` and ``overview_note`` (the AI's overview of the period, or why there is
  none; either may be None);
- ``items``: up to the route's `digest_max_items` changes, newest first (each a
  `DigestEntry`), ``count`` (every change in the period) and ``more`` (those not listed);
- ``unsubscribe_url`` (None unless `[api] public_url` is set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from jinja2 import TemplateError

from herald.email.display import FieldDisplay, display_change
from herald.email.render import RenderedEmail
from herald.email.values import readable_moment, sanitize_header_text, truncate, visible
from herald.email.view import ChangeView
from herald.errors import PermanentError
from herald.templating import environment

__all__ = ["DIGEST_TEMPLATE", "DigestEntry", "render_digest"]

DIGEST_TEMPLATE = "digest"
#: Fields listed per change in a digest (a digest is a list; the single email has them all).
MAX_DIGEST_FIELDS = 8
MAX_OVERVIEW_CHARS = 2_000


@dataclass(frozen=True)
class DigestEntry:
    number: int
    change_id: int
    operation: str
    title: str  # Classes: "Welding basics" updated
    table: str  # in words: Classes
    when: str  # in the schedule's timezone
    fields: list[FieldDisplay] = field(default_factory=list)
    more_fields: int = 0
    width: int = 0


def local_moment(moment: datetime, tz: tzinfo) -> str:
    """``4 Mar 2026, 09:00 SAST``: in the recipient's timezone, named as it is there."""
    local = moment.astimezone(tz)
    return f"{readable_moment(local.replace(tzinfo=None))} {local.tzname() or ''}".rstrip()


def _entry(change: ChangeView, number: int, label_field: str | None, tz: tzinfo) -> DigestEntry:
    shown, _ = display_change(change, number, label_field, one_row=False)
    fields = shown.fields[:MAX_DIGEST_FIELDS]
    return DigestEntry(
        number=number,
        change_id=shown.change_id,
        operation=shown.operation,
        title=shown.title,
        table=shown.table,
        when=local_moment(change.changed_at, tz),
        fields=fields,
        more_fields=shown.more_fields + len(shown.fields) - len(fields),
        width=shown.width,
    )


def _heading(count: int, tables: Sequence[str]) -> str:
    noun = "change" if count == 1 else "changes"
    named = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    return f"{count} {noun} to {named}" if named else f"{count} {noun}"


def render_digest(
    changes: Sequence[ChangeView],
    *,
    count: int,
    route: str,
    schedule: str,
    timezone: tzinfo,
    timezone_name: str,
    period_start: datetime,
    period_end: datetime,
    overview: str | None = None,
    overview_note: str | None = None,
    label_field: str | None = None,
    templates_dir: str | None = None,
    unsubscribe_url: str | None = None,
) -> RenderedEmail:
    """Render the digest of `changes` (newest first, those listed) out of `count`.

    Raises ``PermanentError("cannot render digest: ...")`` for what cannot be shown."""
    if not changes:
        raise PermanentError("cannot render digest: no changes")
    try:
        entries = [_entry(c, i, label_field, timezone) for i, c in enumerate(changes, 1)]
        frequency = schedule.split(" ", 1)[0].capitalize()
        heading = _heading(count, list(dict.fromkeys(e.table for e in entries)))
        context: dict[str, Any] = {
            "subject": sanitize_header_text(f"{frequency} digest: {heading}", 150),
            "heading": heading,
            "frequency": frequency,
            "period": f"{local_moment(period_start, timezone)} to "
            f"{local_moment(period_end, timezone)}",
            "schedule": schedule,
            "timezone": timezone_name,
            "route": sanitize_header_text(route, 200),
            "overview": visible(truncate(overview, MAX_OVERVIEW_CHARS)) if overview else None,
            "overview_note": sanitize_header_text(overview_note, 200) if overview_note else None,
            "items": entries,
            "count": count,
            "more": max(count - len(entries), 0),
            "unsubscribe_url": unsubscribe_url,
        }
        env = environment(templates_dir)
        subject = env.get_template(f"{DIGEST_TEMPLATE}.subject.txt").render(context)
        context["subject"] = sanitize_header_text(subject, 150) or context["subject"]
        text = env.get_template(f"{DIGEST_TEMPLATE}.txt").render(context)
        html = env.get_template(f"{DIGEST_TEMPLATE}.html").render(context)
    except PermanentError:
        raise
    except TemplateError as exc:
        raise PermanentError(f"cannot render digest: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise PermanentError(f"cannot render digest: {type(exc).__name__}: {exc}") from exc
    return RenderedEmail(context["subject"], text, html)
