"""Credentials are never echoed: what of a connection URL may appear in an error or a log.

Herald's URLs (HERALD_DATABASE_URL, HERALD_BROKER_URL, HERALD_SMTP_URL) may carry a user
name and password, and libraries quote what they were given when they refuse it (libpq:
`missing "=" after "herald:PASSWORD@db/herald" in connection info string`). Errors Herald
raises therefore name a URL by its scheme alone (`scheme_of`), and a library's message is
passed through `scrub` with every credential the URL holds (`url_secrets`) before it is
shown. Plain string scanning, no regular expressions: bounded and linear on any input.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

#: What a secret is replaced with in a message.
MASK = "***"
#: Secrets shorter than this are not replaced inside a message (that would rewrite every
#: such run of letters); a message holding one is withheld whole instead.
MIN_REPLACED = 4
#: Longest scheme `scheme_of` quotes (RFC 3986 schemes are short words).
MAX_SCHEME = 16
_SCHEME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME_REST = _SCHEME_FIRST | frozenset("0123456789+-.")


def scheme_of(url: str) -> str | None:
    """The URL's scheme when it has a well-formed one before `://`, else None.

    `herald:PASSWORD@rabbit:5672/herald` has none (`herald` is the user name): an error
    may quote what this returns and nothing else of the URL.
    """
    head, sep, _ = url.partition("://")
    if not sep or not 0 < len(head) <= MAX_SCHEME:
        return None
    if head[0] not in _SCHEME_FIRST or any(c not in _SCHEME_REST for c in head):
        return None
    return head.lower()


def url_secrets(url: str | None) -> list[str]:
    """Every form in which `url`'s credentials could be quoted back, longest first.

    The userinfo (everything before the last `@` of the part after `scheme://`, so a
    malformed password holding `/` or `@` is covered too) and its password, as written,
    percent-decoded and percent-encoded; a `password=` value of a key=value string or a
    query; and the URL itself when it holds any of them.
    """
    if not url:
        return []
    found: set[str] = set()
    _, sep, rest = url.partition("://")
    rest = rest if sep else url
    at = rest.rfind("@")
    if at > 0:
        # A user name alone is no secret (and a short one would mask half a message).
        userinfo = rest[:at]
        password = userinfo.partition(":")[2]
        if password:
            found.update((userinfo, password))
        # The narrow reading too (the authority ends at the first "/"): its password.
        authority = rest.split("/", 1)[0]
        narrow = authority[: authority.rfind("@")] if "@" in authority else ""
        if narrow.partition(":")[2]:
            found.update((narrow, narrow.partition(":")[2]))
    found.update(_keyword_passwords(url))
    if found:
        found.add(url)
    try:
        parts = urlsplit(url)
        if parts.password:
            found.add(parts.password)
    except ValueError:
        pass
    variants = {v for s in found for v in (s, unquote(s), quote(s, safe=""))}
    return sorted((v for v in variants if v), key=len, reverse=True)


def _keyword_passwords(text: str) -> Iterable[str]:
    """Values of `password=` (libpq key=value strings, URL queries), up to a separator."""
    lowered = text.lower()
    start = 0
    while (index := lowered.find("password", start)) >= 0:
        start = index + len("password")
        rest = text[start:].lstrip(" ")
        if not rest.startswith("="):
            continue
        value = rest[1:].lstrip(" ")
        if value.startswith("'"):
            end = value.find("'", 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            cut = [i for i in (value.find(c) for c in " &;\t\n") if i >= 0]
            value = value[: min(cut)] if cut else value
        if value:
            yield value


def secrets_of(*urls: str | None, keys: Iterable[str | None] = ()) -> list[str]:
    """The secrets of several URLs and plain secrets (an API key), longest first."""
    found = {s for url in urls for s in url_secrets(url)}
    found.update(key for key in keys if key)
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret masked; withheld whole when it holds a very short one."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if not secret or secret not in text:
            continue
        if len(secret) < MIN_REPLACED:
            return "(details withheld: they would quote a credential)"
        text = text.replace(secret, MASK)
    return text


def redacted_url(url: str) -> str:
    """`url` without its userinfo, query and fragment (`postgresql://host:5432/herald`), to
    say where Herald tried to connect; the scheme alone when it cannot be parsed."""
    scheme = scheme_of(url)
    if scheme is None:
        return "(a URL without a scheme)"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://(malformed)"
    path = parts.path if "@" not in parts.path else "/(malformed)"
    return f"{scheme}://{host}{port}{path}"


class ScrubbingFilter(logging.Filter):
    """A handler filter that masks `secrets` in every record it passes, traceback included:
    a last line of defence for messages Herald does not build itself (libraries' errors)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = scrub(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(
                "".join(traceback.format_exception(*record.exc_info)).rstrip("\n"), self.secrets
            )
        return True


def scrub_logging(secrets: Iterable[str]) -> None:
    """Mask `secrets` in everything the root logger's handlers write from now on."""
    found = ScrubbingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(found)
