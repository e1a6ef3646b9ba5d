"""The demo's `index.html`: every email it wrote, as a reader would see it, in one page.

Each `.eml` file is read back (what was sent, not what was meant to be), and shown with
its subject, sender, recipients and headers; its HTML part in a sandboxed `<iframe
srcdoc>` (no scripts, no network: the page's Content-Security-Policy allows inline
styles and nothing else), its plain-text part below. Jinja2 escapes every value, the
srcdoc attribute included, so a hostile row cannot break out of its frame.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

INDEX = "index.html"


@dataclass(frozen=True)
class ShownEmail:
    """One email as the page shows it."""

    anchor: str
    file: str
    href: str
    subject: str
    sender: str
    recipients: str
    date: str
    change_ids: str
    message_id: str
    html: str | None
    text: str | None


def _part(message: EmailMessage, kind: str) -> str | None:
    body = message.get_body(preferencelist=(kind,))
    if body is None:
        return None
    content = body.get_content()
    return content if isinstance(content, str) else None


def read_email(path: Path, number: int) -> ShownEmail:
    """An `.eml` file, parsed as a mail client would."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    return ShownEmail(
        anchor=f"email-{number}",
        file=path.name,
        href=quote(path.name),
        subject=str(message.get("Subject", "(no subject)")),
        sender=str(message.get("From", "")),
        recipients=", ".join(str(v) for v in (message.get_all("To") or [])),
        date=str(message.get("Date", "")),
        change_ids=str(message.get("X-Herald-Change-Id", "")),
        message_id=str(message.get("Message-ID", "")),
        html=_part(message, "html"),
        text=_part(message, "plain"),
    )


def render_index(emails: Sequence[ShownEmail], facts: Sequence[tuple[str, str]]) -> str:
    """The page: the run's facts, a table of contents, then each email."""
    env = Environment(
        loader=PackageLoader("herald.cli.demo", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("index.html").render(emails=emails, facts=facts)


def write_index(directory: Path, paths: Sequence[Path], facts: Sequence[tuple[str, str]]) -> Path:
    """Write `index.html` beside the emails (in file order); return its path."""
    emails = [read_email(p, i) for i, p in enumerate(sorted(paths), start=1)]
    target = directory / INDEX
    target.write_text(render_index(emails, facts), encoding="utf-8")
    return target
