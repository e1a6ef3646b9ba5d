"""`herald serve`'s configuration: HERALD_API_TOKENS, `[api] public_url` and the
HERALD_SECRET_KEY that signs the unsubscribe links. Tokens and the key are never quoted in
an error or a repr."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Strict

from herald.config.values import Must, Unfit, section
from herald.errors import ConfigError

#: `herald serve`'s defaults: loopback only unless configured.
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8080
#: Roles of HERALD_API_TOKENS: a viewer reads; an operator also retries, cancels and sends.
API_ROLES = ("viewer", "operator")
MIN_API_TOKEN_CHARS = 16
#: HERALD_SECRET_KEY signs the unsubscribe links: at least this long.
MIN_SECRET_KEY_CHARS = 32


@section
class ApiToken:
    """One HERALD_API_TOKENS entry; the token never appears in a repr or an error."""

    role: str
    token: str = dataclasses.field(repr=False)


def parse_api_tokens(text: str) -> tuple[ApiToken, ...]:
    """`viewer:TOKEN,operator:TOKEN,...` (several per role allowed); errors name the entry
    by its position, never by its text (it may hold a token)."""
    tokens: list[ApiToken] = []
    entries = [e.strip() for e in text.split(",")]
    for index, entry in enumerate((e for e in entries if e), start=1):
        role, sep, token = (part.strip() for part in entry.partition(":"))
        if not sep or role not in API_ROLES:
            raise ConfigError(
                f"HERALD_API_TOKENS: entry {index} must be ROLE:TOKEN with ROLE one of "
                f"{', '.join(API_ROLES)}"
            )
        if len(token) < MIN_API_TOKEN_CHARS:
            raise ConfigError(
                f"HERALD_API_TOKENS: entry {index} ({role}): the token is shorter than "
                f"{MIN_API_TOKEN_CHARS} characters"
            )
        if any(t.token == token for t in tokens):
            raise ConfigError(f"HERALD_API_TOKENS: entry {index} repeats an earlier token")
        tokens.append(ApiToken(role, token))
    return tuple(tokens)


def _public_url(url: str) -> str:
    """An http(s) URL of printable ASCII without a query, a fragment or quoting trouble."""
    if (
        not url.startswith(("https://", "http://"))
        or any(c in url for c in '?#"\\<> ')
        or len(url) > 200
        or any(ord(c) < 33 or ord(c) > 126 for c in url)
    ):
        raise Unfit
    return url.rstrip("/")


PublicUrl = Annotated[
    str, Strict(), AfterValidator(_public_url), Must("an http(s) URL without a query")
]


@section
class ApiSection:
    """`[api]` in herald.toml: where recipients reach `herald serve`."""

    public_url: PublicUrl | None = None


def public_links(api: ApiSection, env: Mapping[str, str]) -> dict[str, Any]:
    """`[api] public_url` and HERALD_SECRET_KEY, needed together for the unsubscribe links;
    the key is never quoted in an error."""
    key = env.get("HERALD_SECRET_KEY") or None
    if key is not None and len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(f"HERALD_SECRET_KEY is shorter than {MIN_SECRET_KEY_CHARS} characters")
    if api.public_url is None:
        return {"public_url": None, "secret_key": key}
    if key is None:
        raise ConfigError(
            "[api] public_url is set but HERALD_SECRET_KEY is not: the one-click unsubscribe "
            "links in every email are signed with it"
        )
    return {"public_url": api.public_url, "secret_key": key}
