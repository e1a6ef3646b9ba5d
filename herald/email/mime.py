"""A rendered notification as the bytes an SMTP server receives, headers made safe.

Why not build an ``email.message.EmailMessage`` and flatten it: that object model
cost about 2.5 ms of the 4 ms a worker spent on each email (cProfile, benchmarks/
profile_email.py), more than the SMTP exchange. Herald's messages always have one
shape (multipart/alternative: text, then HTML, both UTF-8), so they are written
here directly. Headers that are plain printable ASCII are written as they are
(folded at spaces); any other header goes through ``email.policy.SMTP`` exactly
as before, and is then read back as a receiver would and checked.

Header safety, whichever way a header is written:

- a value holding CR, LF, NUL, U+0085, U+2028 or U+2029 is refused with a
  ``PermanentError`` naming the header, and so is one whose RFC 2047 encoded
  words decode to one (``=?UTF-8?Q?=0A?=``);
- the finished header block is checked: no bare CR, LF or NUL, and exactly the
  headers we set, in order (every other line is a continuation), so nothing can
  add a header or a recipient;
- the SMTP envelope never comes from these headers: the mailer is given it.
"""

from __future__ import annotations

import binascii
import email.policy
import email.utils
import functools
import hashlib
import random
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from email.headerregistry import Address, HeaderRegistry
from typing import TYPE_CHECKING

from herald.errors import PermanentError
from herald.headers import FORBIDDEN_IN_HEADERS

if TYPE_CHECKING:  # for types only: render imports this module
    from herald.email.render import RenderedEmail

__all__ = [
    "FORBIDDEN_IN_HEADERS",
    "build_message",
    "message_id_for",
    "parse_address",
    "reject_line_breaks",
]


#: RFC 5322's recommended line length; headers are folded to it where they can be.
LINE_LENGTH = 78

#: RFC 5322's hard limit on a line, CRLF excluded.
MAX_LINE = 998

_CRLF = b"\r\n"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
_PLAIN = re.compile(r"[\x20-\x7e]*")
# An address written as is: a dot-atom local part and a host name (what nearly every
# recipient is). Anything else (display names, quoting, non-ASCII) goes through the policy.
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_BARE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n|\0")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_ID_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "X-Herald-Change-Id",
        "Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "List-Unsubscribe", "List-Unsubscribe-Post",
    )
)  # fmt: skip
#: RFC 8058: the one value of List-Unsubscribe-Post.
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
#: The longest unsubscribe link written (one unfolded line, well under 998 characters).
MAX_UNSUBSCRIBE_URL = 490


class _CachedHeaderRegistry(HeaderRegistry):
    """``HeaderRegistry`` building each header class once (the stock one makes a new class
    with ``type()`` for every header, a third of the policy path's cost)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


#: How headers that are not plain ASCII are written (``email.policy.SMTP``) and read back.
_POLICY = email.policy.SMTP.clone(header_factory=_CachedHeaderRegistry())
_PARSE_POLICY = email.policy.default.clone(header_factory=_CachedHeaderRegistry())


def reject_line_breaks(header: str, value: str) -> None:
    for ch in FORBIDDEN_IN_HEADERS:
        if ch in value:
            raise PermanentError(f"{header} header contains a forbidden character U+{ord(ch):04X}")


def message_id_for(notification_id: int, recipient: str, domain: str) -> str:
    """The Message-ID for one notification and recipient, the same on every attempt.

    A duplicate send (worker died after the server accepted) then carries the
    same id, so receiving systems can drop it. The recipient is hashed so the
    header reveals nothing about who else received the notification.
    """
    if not _ID_DOMAIN.fullmatch(domain):
        raise PermanentError(f"Message-ID domain {domain!r} is not a plain host name")
    digest = hashlib.sha256(recipient.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<herald.n{int(notification_id)}.{digest}@{domain}>"


def parse_address(value: str, *, header: str = "address") -> Address:
    """Exactly one address (with optional display name), or ``PermanentError`` naming ``header``."""
    reject_line_breaks(header, value)
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


def build_message(
    rendered: RenderedEmail,
    *,
    mail_from: str,
    recipient: str,
    message_id: str,
    change_ids: Sequence[int],
    extra_headers: Mapping[str, str] | None = None,
    unsubscribe_url: str | None = None,
) -> bytes:
    """The message as sent: Herald's headers, then text and HTML as multipart/alternative.

    With ``unsubscribe_url`` (an http(s) link, herald/unsubscribe.py), ``List-Unsubscribe``
    and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` follow X-Herald-Change-Id
    (RFC 2369, RFC 8058).

    Raises ``PermanentError`` naming the header for any value that cannot be written
    safely (see the module docstring). The SMTP envelope is never taken from here.
    """
    reject_line_breaks("Message-ID", message_id)
    if not _MESSAGE_ID.fullmatch(message_id):
        raise PermanentError(f"Message-ID header is not <local@domain>: {message_id!r}")
    ids = list(change_ids)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise PermanentError(f"X-Herald-Change-Id header needs integer change ids: {ids!r}")

    headers: list[tuple[str, bytes]] = [
        ("Message-ID", _plain("Message-ID", message_id)),
        ("Date", _date_header(int(time.time()))),
        ("From", _address("From", mail_from)),
        ("To", _address("To", recipient)),
        ("Subject", _text("Subject", rendered.subject)),
        ("Auto-Submitted", b"Auto-Submitted: auto-generated\r\n"),
        ("X-Herald-Change-Id", _list("X-Herald-Change-Id", [str(i) for i in ids])),
    ]
    if unsubscribe_url is not None:
        headers.append(("List-Unsubscribe", _unsubscribe(unsubscribe_url)))
        headers.append(("List-Unsubscribe-Post", ONE_CLICK))
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise PermanentError(f"extra header name {name!r} is not allowed")
        headers.append((name, _text(name, value)))
    block = b"".join(folded for _, folded in headers)
    _check_header_block(block, [name for name, _ in headers])

    text = _part("text/plain", rendered.text)
    html = _part("text/html", rendered.html)
    boundary = _boundary(text, html)
    return b"".join([
        block,
        b"MIME-Version: 1.0\r\n",
        b'Content-Type: multipart/alternative;\r\n boundary="', boundary, b'"\r\n',
        b"\r\n",
        b"--", boundary, b"\r\n", text,
        b"--", boundary, b"\r\n", html,
        b"--", boundary, b"--\r\n",
    ])  # fmt: skip


# -- headers ----------------------------------------------------------------------------------


def _plain(name: str, value: str) -> bytes:
    """A header whose value is plain printable ASCII: written as is, folded at spaces."""
    line = f"{name}: {value}"
    if len(line) <= LINE_LENGTH:
        return line.encode("ascii") + _CRLF
    lines: list[str] = []
    for word in value.split(" "):
        if lines and (not word or len(lines[-1]) + 1 + len(word) <= LINE_LENGTH):
            # (an empty word is a second space: it stays on its line, never a blank line)
            lines[-1] += " " + word
        else:
            lines.append(f"{name}:" if not lines else "")
            lines[-1] += " " + word
    if any(len(x) > MAX_LINE for x in lines):
        raise PermanentError(f"{name} header has a word longer than a line may be")
    return "\r\n".join(lines).encode("ascii") + _CRLF


@functools.lru_cache(maxsize=2)  # the messages of one second share it
def _date_header(now: int) -> bytes:
    return _plain("Date", email.utils.formatdate(now, usegmt=True))


def _text(name: str, value: str) -> bytes:
    """An unstructured header (Subject, extra headers)."""
    reject_line_breaks(name, value)
    if _PLAIN.fullmatch(value) and "=?" not in value and len(value) < MAX_LINE // 2:
        return _plain(name, value)
    return _by_policy(name, value)


@functools.lru_cache(maxsize=256)  # From is the same on every message
def _address(name: str, value: str) -> bytes:
    """From / To: exactly one address."""
    reject_line_breaks(name, value)
    if _SIMPLE_ADDRESS.fullmatch(value) and len(value) < LINE_LENGTH - len(name) - 2:
        return f"{name}: {value}\r\n".encode("ascii")
    return _by_policy(name, parse_address(value, header=name))


def _unsubscribe(url: str) -> bytes:
    """``List-Unsubscribe: <url>``: one http(s) link of plain printable ASCII, no spaces
    or angle brackets, on one line (a URL is never folded)."""
    if (
        not url.startswith(("https://", "http://"))
        or len(url) > MAX_UNSUBSCRIBE_URL
        or not _PLAIN.fullmatch(url)
        or any(c in url for c in ' <>"')
    ):
        raise PermanentError("List-Unsubscribe header needs a plain http(s) link")
    return f"List-Unsubscribe: <{url}>\r\n".encode("ascii")


def _list(name: str, items: list[str]) -> bytes:
    """A comma-separated list of plain tokens, folded after commas (``1,2,...``)."""
    lines = [f"{name}: "]
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(lines[-1]) + len(piece) > LINE_LENGTH and lines[-1].strip() not in ("", f"{name}:"):
            lines.append(" ")
        lines[-1] += piece
    return "\r\n".join(lines).encode("ascii") + _CRLF


def _by_policy(name: str, value: str | Address) -> bytes:
    """Write a header through ``email.policy.SMTP`` (encoded words, quoting, folding) and
    read it back as a receiver would: one header of this name, and what it decodes to
    holds no line break or control character."""
    try:
        _, header = _POLICY.header_store_parse(name, value)
        folded = _POLICY.fold_binary(name, header)
    except (ValueError, TypeError) as exc:  # the email package refuses line breaks itself
        raise PermanentError(f"{name} header cannot be written: {exc}") from exc
    if _bare_break(folded):
        raise PermanentError(f"{name} header would be written with a bare line break or NUL")
    lines = folded.decode("ascii", "surrogateescape").split("\r\n")
    if lines[-1] == "":
        lines.pop()
    first, rest = (lines[0], lines[1:]) if lines else ("", [])
    if first.split(":", 1)[0].lower() != name.lower() or any(
        not line or line[0] not in " \t" for line in rest
    ):
        raise PermanentError(f"{name} header does not survive serialisation unchanged")
    parsed_name, raw = _PARSE_POLICY.header_source_parse([line + "\r\n" for line in lines])
    if b"=?" in folded or b"*" in folded:
        # Encoded words (RFC 2047) or parameter encodings (RFC 2231): decode them.
        text = str(_PARSE_POLICY.header_fetch_parse(parsed_name, raw))
    else:
        text = raw.replace("\r\n", "")
    reject_line_breaks(name, text)
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text):
        raise PermanentError(f"{name} header contains a control character")
    return folded


def _check_header_block(block: bytes, names: list[str]) -> None:
    """No bare line break or NUL, and exactly ``names`` as headers, each once and in order."""
    if _bare_break(block):
        raise PermanentError("message headers would be written with a bare line break or NUL")
    lines = block.split(_CRLF)
    if lines[-1] == b"":
        lines.pop()
    # (header names are ASCII: compared as bytes, a line holding other bytes never matches)
    starts = [line.split(b":", 1)[0].lower() for line in lines if line[:1] not in (b" ", b"\t")]
    if starts != [n.lower().encode("ascii", "replace") for n in names] or any(
        not line.strip() for line in lines
    ):
        raise PermanentError("message headers do not survive serialisation unchanged")
    if any(len(line) > MAX_LINE for line in lines):
        raise PermanentError("a message header line is longer than 998 characters")


def _bare_break(data: bytes) -> bool:
    """A CR not before LF, an LF not after CR, or a NUL."""
    return _BARE_BREAK.search(data) is not None


# -- body ---------------------------------------------------------------------------------------


def _part(content_type: str, text: str) -> bytes:
    """One UTF-8 body part: 7bit when it is short-lined ASCII without NUL, else
    quoted-printable (which also encodes NUL)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if not body.endswith("\n"):
        body += "\n"
    data = body.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if data.isascii() and b"\0" not in data and _short_lines(data):
        encoding, payload = b"7bit", data
    else:
        encoding = b"quoted-printable"
        payload = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return b"".join([
        b"Content-Type: ", content_type.encode("ascii"), b'; charset="utf-8"\r\n',
        b"Content-Transfer-Encoding: ", encoding, b"\r\n",
        b"\r\n",
        payload.replace(b"\n", _CRLF),
        _CRLF,  # the line break before a boundary belongs to the boundary (RFC 2046)
    ])  # fmt: skip


def _short_lines(data: bytes) -> bool:
    return len(data) <= MAX_LINE or max(map(len, data.split(b"\n"))) <= MAX_LINE


def _boundary(*parts: bytes) -> bytes:
    """A random boundary that occurs in no part (checked, not just likely).

    It needs to be unlikely in the content, not unguessable: like ``email.generator``,
    `random` (reseeded in each forked worker) rather than a system call per message.
    """
    while True:
        boundary = b"herald-%032x" % random.getrandbits(128)
        if not any(boundary in part for part in parts):
            return boundary
