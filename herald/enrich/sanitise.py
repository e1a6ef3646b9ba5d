"""Make the model's answer safe to put in an email: no links, no addresses, one short line.

The answer is untrusted (OWASP LLM01/LLM05): a change's fields may carry a prompt
injection, and whatever the model writes lands at the top of an email that people trust.
So everything a mail client could make clickable is removed: URLs with any scheme, bare
host names on any TLD (``evil.de``, ``www.evil.com/path``), IP addresses with a path or
port (``10.0.0.1/x``), the same written with fullwidth or ideographic punctuation
(``https：//evil。de``), and email addresses. Ordinary text stays: "e.g.", "3.5",
"v1.2.3", "U.S.", file names such as "report.pdf" (extensions that are no TLD).

Twice: ``sanitise_summary`` when the answer arrives (aliases such as ``EMAIL_1`` survive
it), and ``restore_summary`` when the email is rendered, after the real values are put
back: a field value that is itself a link ("http://evil.de" as a first name) would
otherwise come back through its alias. Only values that are whole email addresses are
kept as they are: they are the row's own data, which the email shows anyway.

Every pattern is linear (possessive or bounded repeats, one way to match), and the text
is cut before any pattern runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from herald.enrich.pii import unalias
from herald.enrich.pii_detect import AT_SIGNS, EMAIL_PATTERN, email_spans

__all__ = [
    "INVISIBLE",
    "MAX_RESTORED_CHARS",
    "MAX_SUMMARY_CHARS",
    "SPACES",
    "cap",
    "restore_summary",
    "sanitise_summary",
]

MAX_SUMMARY_CHARS = 600
MAX_RESTORED_CHARS = 2_000  # the summary with its real values back
_MAX_VALUE_CHARS = 320  # one real value put back (an email address is at most 254)

# Control and invisible formatting characters (bidi overrides, zero-width) that could hide
# or reorder text in an email; whitespace of every kind is collapsed separately.
INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
SPACES = re.compile(r"\s+")

# Punctuation that browsers and mail clients read as ":", "." or "/" in a link, folded
# one character for one so that a match in the folded text is a span of the original:
# fullwidth ASCII (U+FF01 to U+FF5E), ideographic and other full stops, colons, slashes.
_FOLD = (
    {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
    | {cp: ord(".") for cp in (0x3002, 0xFF61, 0xFE52, 0x2024, 0x2027)}
    | {cp: ord(":") for cp in (0xFE13, 0xFE55, 0x2236, 0xA789)}
    | {cp: ord("/") for cp in (0x2215, 0x2044, 0x29F8)}
)

_SCHEMES = (
    "mailto|javascript|vbscript|data|file|tel|sms|callto|sip|ftp|https?|wss?|ssh|git|irc"
    "|magnet|skype|facetime|intent|blob|about|view-source|ms-[a-z\\-]{1,20}+"
)
_HOST = (
    r"(?:[^\W_](?:[^\W_]|-)*+\.)+"  # labels: letters, digits, hyphens (no "_": EMAIL_1)
    r"(?P<tld>[^\W\d_]{2,63}+|xn--[a-z0-9\-]{1,59}+)(?![\w\-])"
)
# A link starts a token: not after a letter, digit, "_", "." or "-".
_LINK = re.compile(
    r"(?i)(?<![\w.\-])(?:"
    r"[a-z][a-z0-9+.\-]{1,15}+:[/\\]{1,3}+\S*+"  # any scheme with "//"
    rf"|(?:{_SCHEMES}):\S++"  # schemes without "//", followed by something
    r"|(?:\d{1,3}+\.){3}\d{1,3}+(?::\d{1,5}+)?[/?#:]\S*+"  # an IP address with a path or port
    r"|www\.\S*+"
    rf"|{_HOST}(?P<rest>[:/?#]\S*+)?"  # a host name on any TLD, maybe with a path
    r")"
)
# What every match of _LINK holds: a ":" followed by something (a scheme: "//" or more),
# "www.", or a "." followed by a letter or digit (a host name's labels, an IP address).
# Most summaries hold none: a sentence's "." and ":" are followed by a space. The links
# pattern runs only on the others.
_MAY_HOLD_LINK = re.compile(r"(?i):\S|\.\w|www\.")
# Every email address has an "@" (fullwidth ones are folded to it; a small one is not).
_MAY_HOLD_ADDRESS = re.compile(f"[{AT_SIGNS}]")
# File extensions that are no top-level domain (checked against the Public Suffix List):
# "report.pdf" is content, not a link. "zip", "mov", "py", "md", "sh" are TLDs.
_NOT_TLDS = frozenset({
    "pdf", "csv", "tsv", "txt", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods",
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "tif", "tiff", "json", "yaml", "yml",
    "xml", "html", "htm", "log", "sql", "tar", "gz", "tgz", "bak", "tmp", "ini", "cfg", "conf",
    "toml", "js", "ts", "css", "exe", "dmg", "iso", "heic", "eml", "msg", "ics", "vcf",
})  # fmt: skip


def sanitise_summary(text: str, max_chars: int = MAX_SUMMARY_CHARS) -> str:
    """Make model output safe to put in an email: one short line, no links, no addresses.

    Aliases (``EMAIL_1``) survive; they are put back by ``restore_summary``. An address
    in the output was invented or injected, never ours, so it is removed, not unaliased.
    """
    text = text[: max_chars * 8]  # bound the work before any pattern runs
    text = INVISIBLE.sub("", text)
    text = _strip_links(text)
    text = SPACES.sub(" ", text).strip()
    return cap(text, max_chars)


def restore_summary(
    text: str, aliases: Mapping[str, str], max_chars: int = MAX_RESTORED_CHARS
) -> str:
    """The stored summary with its real values back, sanitised again.

    ``unalias`` alone would let a field value that is a link ("http://evil.de") or an
    address inside text come back into the summary through its alias. Values that are
    whole email addresses are put back last, after the links are stripped, so the
    recipient still reads who changed what.
    """
    if not text:
        return text
    addresses: dict[str, str] = {}
    others: dict[str, str] = {}
    for alias, real in aliases.items():
        value = _one_line(str(real))
        if EMAIL_PATTERN.fullmatch(value):
            addresses[alias] = value
        else:
            others[alias] = value
    text = sanitise_summary(unalias(text, others), max_chars)
    return cap(unalias(text, addresses), max_chars)


def cap(text: str, max_chars: int) -> str:
    """Cut at a word boundary and end with "…" when ``text`` is longer than ``max_chars``."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", max_chars // 2, max_chars)
    return text[: cut if cut > 0 else max_chars - 1].rstrip(" ,;:") + "…"


def _one_line(value: str) -> str:
    value = INVISIBLE.sub("", value[: _MAX_VALUE_CHARS * 4])
    return cap(SPACES.sub(" ", value).strip(), _MAX_VALUE_CHARS)


def _strip_links(text: str) -> str:
    """Replace email addresses and links, found in the folded text, in the original."""
    folded = text if text.isascii() else text.translate(_FOLD)  # _FOLD maps no ASCII
    found = []
    if _MAY_HOLD_ADDRESS.search(folded) is not None:
        found = [(a, b, False) for a, b in email_spans(folded)]
    if _MAY_HOLD_LINK.search(folded) is not None:
        for m in _LINK.finditer(folded):
            if m.group("tld") and not m.group("rest") and m.group("tld").lower() in _NOT_TLDS:
                continue  # report.pdf
            found.append((m.start(), m.end(), True))
    if not found:
        return text
    # Overlaps merge, named after what starts first: "example.com" inside
    # "a@example.com" is an address; "http://x.com/a@example.com" is a link.
    cuts: list[tuple[int, int, bool]] = []
    for a, b, is_link in sorted(found, key=lambda f: (f[0], -f[1])):
        if cuts and a < cuts[-1][1]:
            first, end, first_is_link = cuts[-1]
            cuts[-1] = (first, max(b, end), first_is_link)
        else:
            cuts.append((a, b, is_link))
    parts: list[str] = []
    last = 0
    for a, b, is_link in cuts:
        span = text[a:b]
        parts += [text[last:a], _link_removed(span) if is_link else "[email removed]"]
        last = b
    parts.append(text[last:])
    return "".join(parts)


def _link_removed(link: str) -> str:
    """Replace a link, keeping the sentence's own punctuation that the match swallowed."""
    kept = link.rstrip(".,;:!?'\"")
    while kept.endswith(")") and kept.count(")") > kept.count("("):
        kept = kept[:-1].rstrip(".,;:!?'\"")
    return "[link removed]" + link[len(kept) :]
