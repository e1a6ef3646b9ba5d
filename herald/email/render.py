"""Turn change-log rows into an email a person wants to read: bounded and injection-safe.

Row values are hostile input: any JSON, any size, any characters. Everything a
template shows is prepared here first (formatted, truncated, control characters
made visible, dates in words), so templates stay dumb and a 10 MB value still
renders a small email. Anything that reaches a header is sanitised here;
`herald.email.mime` then writes the message and checks its headers as bytes.

What the templates see (the packaged triplet, or yours in ``[mail] templates_dir``):

- ``subject``: the route's ``subject`` if it rendered, else the default in words;
- ``headline``: what the email is about (``Welding basics``, ``#3``, ``3 changes``);
  ``kicker``: the table(s) in words; ``byline``: what happened and when;
- ``summary`` and ``summary_note`` (either may be None), ``route``, ``footer``;
- ``changes``: one `ChangeDisplay` each (its ``fields`` are `FieldDisplay`), ``count``,
  ``more_changes``, ``single`` (one change) and ``one_row`` (all to the same row).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateError

from herald.email.display import MAX_FIELDS, ChangeDisplay, FieldDisplay, display_change, overview
from herald.email.subject import (
    MAX_SUBJECT_CHARS,
    default_subject,
    render_subject,
    subject_context,
)
from herald.email.values import (
    MAX_VALUE_CHARS,
    format_value,
    sanitize_header_text,
    truncate,
    visible,
)
from herald.email.view import OPERATIONS, ChangeView, FieldChange, canonical
from herald.errors import PermanentError
from herald.templating import (
    PARTS,
    Presentation,
    TemplateProblem,
    check_templates_statically,
    environment,
    is_template_name,
    presentation_for,
)

__all__ = [
    "MAX_CHANGES",
    "MAX_FIELDS",
    "MAX_SUBJECT_CHARS",
    "MAX_SUMMARY_CHARS",
    "MAX_VALUE_CHARS",
    "OPERATIONS",
    "ChangeDisplay",
    "ChangeView",
    "FieldChange",
    "FieldDisplay",
    "Presentation",
    "RenderedEmail",
    "check_templates",
    "format_value",
    "presentation_for",
    "render_notification",
    "sanitize_header_text",
]

MAX_CHANGES = 100
"""Changes listed per email (a digest or debounce group can be large)."""
MAX_SUMMARY_CHARS = 10_000


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    #: Why the route's subject template was not used (for the ledger); empty when it was.
    warnings: tuple[str, ...] = ()


def _context(
    changes: Sequence[ChangeView],
    look: Presentation,
    *,
    route: str,
    summary: str | None,
    summary_note: str | None,
    warnings: list[str],
) -> dict[str, Any]:
    shown = changes[:MAX_CHANGES]
    one_row = len(changes) == 1 or len({(c.table, canonical(c.row_pk)) for c in changes}) == 1
    pairs = [display_change(c, i, look.label_field, one_row) for i, c in enumerate(shown, 1)]
    displays = [d for d, _ in pairs]
    mentions = [m for _, m in pairs]
    subject = default = default_subject(mentions, len(changes))
    if look.subject:
        last = mentions[-1]
        context = subject_context(shown, route=route, label=last.label, table=last.table)
        custom, why = render_subject(look.subject, context)
        if custom is None:
            warnings.append(
                f"route {sanitize_header_text(route, 80)!r}: the subject template failed "
                f"({why}); the default subject was used"
            )
        subject = custom or subject
    return {
        "subject": subject,
        "default_subject": default,
        "changes": displays,
        "count": len(changes),
        "more_changes": len(changes) - len(displays),
        "single": len(changes) == 1,
        "one_row": one_row,
        "summary": visible(truncate(summary, MAX_SUMMARY_CHARS)) if summary else None,
        "summary_note": sanitize_header_text(summary_note, 200) if summary_note else None,
        "route": sanitize_header_text(route, 200),
        **overview(changes, displays, mentions[-1].label, one_row),
    }


def render_notification(
    changes: Sequence[ChangeView],
    *,
    summary: str | None,
    summary_note: str | None,
    route: str,
    template: str | None = None,
    presentation: Presentation | None = None,
) -> RenderedEmail:
    """Render ``<template>.subject.txt``, ``.txt`` and ``.html`` for these changes.

    ``presentation`` (`presentation_for(settings, route)`) carries the route's
    subject, label_field, template and the templates_dir; ``template`` overrides its
    template. A subject template that fails on these changes gives way to the default
    subject and says why in ``RenderedEmail.warnings``. Raises
    ``PermanentError("cannot render notification: ...")`` for anything else that
    cannot be shown: retrying would render the same failure again.
    """
    look = presentation or Presentation()
    name = template or look.template
    if not changes:
        raise PermanentError("cannot render notification: no changes")
    if not is_template_name(name):
        raise PermanentError(f"cannot render notification: bad template name {name!r}")
    warnings: list[str] = []
    try:
        context = _context(
            changes, look, route=route, summary=summary, summary_note=summary_note,
            warnings=warnings,
        )  # fmt: skip
        subject_part, text_part, html_part = _triplet(look.templates_dir, name)
        subject = subject_part.render(context)
        context["subject"] = sanitize_header_text(subject, MAX_SUBJECT_CHARS) or context["subject"]
        text = text_part.render(context)
        html = html_part.render(context)
    except PermanentError:
        raise
    except TemplateError as exc:
        raise PermanentError(
            f"cannot render notification: template {name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        raise PermanentError(f"cannot render notification: {type(exc).__name__}: {exc}") from exc
    return RenderedEmail(context["subject"], text, html, tuple(warnings))


@functools.lru_cache(maxsize=64)
def _triplet(templates_dir: str | None, name: str) -> tuple[Template, Template, Template]:
    """The compiled ``.subject.txt``, ``.txt`` and ``.html`` of a template, looked up once
    per process (templates are read once anyway: `herald.templating.environment`)."""
    env = environment(templates_dir)
    subject, text, html = (env.get_template(name + part) for part in PARTS)
    return subject, text, html


def _samples() -> list[list[ChangeView]]:
    at = datetime.fromisoformat("2026-11-29T11:21:00+00:00")
    old = {"id": 1, "title": "Sample", "seats": 12, "status": "open"}
    new = {**old, "seats": 9, "status": "full"}
    insert = ChangeView(1, "public.samples", "INSERT", {"id": 1}, None, old, at)
    update = ChangeView(2, "public.samples", "UPDATE", {"id": 1}, old, new, at)
    delete = ChangeView(3, "public.samples", "DELETE", {"id": 1}, new, None, at)
    other = ChangeView(4, "public.others", "INSERT", {"id": 2}, None, {"id": 2}, at)
    return [[insert], [update], [delete], [insert, update, delete], [update, other]]


def check_templates(names: Iterable[str], templates_dir: str | None = None) -> None:
    """Refuse the templates that would fail on every email (for start and `herald check`).

    Beyond `check_templates_statically` (files compile, triplets complete, variables
    known), each named template, and each triplet in ``templates_dir``, renders sample
    changes. Raises `TemplateProblem` naming the template.
    """
    names = list(names)
    check_templates_statically(names, templates_dir)
    found = [p.name.removesuffix(".html") for p in _html_files(templates_dir)]
    # (the digest triplet is the digest's: herald/digests/email.py renders it)
    triplets = (n for n in found if is_template_name(n) and n != "digest")
    for name in dict.fromkeys([*names, *triplets]):
        look = Presentation(template=name, templates_dir=templates_dir)
        for i, sample in enumerate(_samples()):
            try:
                render_notification(
                    sample,
                    summary="Sample summary." if i % 2 else None,
                    summary_note="Sample note." if i % 3 == 0 else None,
                    route="check",
                    presentation=look,
                )
            except PermanentError as exc:
                raise TemplateProblem(
                    f"template {name!r} fails on a sample {sample[0].operation}: {exc}"
                ) from None


def _html_files(templates_dir: str | None) -> list[Path]:
    return sorted(Path(templates_dir).glob("*.html")) if templates_dir else []
