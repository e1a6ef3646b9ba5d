"""The `Mailer` interface the email step sends through, and the mailer that writes files.

`FileMailer` is `herald demo`'s mailer (and `HERALD_SMTP_URL=file:///dir`'s): each
message becomes a `.eml` file a person can open. The SMTP client is `herald.email.smtp`;
the fakes for tests are in `herald.testing`.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from herald.errors import PermanentError, TransientError
from herald.headers import FORBIDDEN_IN_HEADERS


class Mailer(Protocol):
    """Hands one message to a mail system, or raises Transient/PermanentError."""

    def send(self, message: bytes, *, from_addr: str, to_addrs: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def check_envelope(from_addr: str, to_addrs: Sequence[str]) -> list[str]:
    if isinstance(to_addrs, str):
        raise PermanentError("to_addrs must be a sequence of addresses, not one string")
    recipients = list(to_addrs)
    if not recipients:
        raise PermanentError("no envelope recipients")
    for label, value in [("MAIL FROM", from_addr)] + [("RCPT TO", r) for r in recipients]:
        if not value or any(ch in value for ch in FORBIDDEN_IN_HEADERS):
            raise PermanentError(f"{label} address is empty or contains a line break or NUL")
    return recipients


_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def _parsed(message: bytes, *, headers_only: bool = False) -> EmailMessage:
    """The message as a receiver reads it (for the demo's file names and the fake's records)."""
    parser = email.parser.BytesParser(policy=email.policy.default)
    parsed = parser.parsebytes(message, headersonly=headers_only)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _slug(message: bytes) -> str:
    subject = str(_parsed(message, headers_only=True).get("Subject", ""))
    subject = subject.lower().removeprefix("[herald]")
    slug = _SLUG_CHARS.sub("-", subject).strip("-")[:60].strip("-")
    return slug or "message"


class FileMailer:
    """Writes each message to ``<dir>/<NNNN>-<slug>.eml``; used by ``herald demo``.

    Numbering continues after files already there, so a second run never
    overwrites the first.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self._lock = threading.Lock()
        numbers = [int(p.name[:4]) for p in self.directory.glob("[0-9][0-9][0-9][0-9]-*.eml")]
        self._next = max(numbers, default=0) + 1

    def __repr__(self) -> str:
        return f"FileMailer({str(self.directory)!r})"

    def send(self, message: bytes, *, from_addr: str, to_addrs: Sequence[str]) -> None:
        check_envelope(from_addr, to_addrs)
        slug = _slug(message)
        with self._lock:
            while True:
                path = self.directory / f"{self._next:04d}-{slug}.eml"
                self._next += 1
                try:
                    with path.open("xb") as fh:
                        fh.write(message)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise TransientError(f"cannot write {path}: {exc}") from exc
                break
            self.paths.append(path)

    def close(self) -> None:
        """Nothing to release; present for the Mailer interface."""
