"""One-click unsubscribe links (RFC 2369, RFC 8058), signed with HERALD_SECRET_KEY.

With `[api] public_url` set, every email Herald sends carries
`List-Unsubscribe: <PUBLIC_URL/unsubscribe/TOKEN>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`; `herald serve` answers the link
(herald/web/unsubscribe.py): GET shows a confirmation page, POST mutes that recipient for
that route.

The token is `PAYLOAD.SIGNATURE`, both base64url: the payload holds the route's
fingerprint (8 bytes of SHA-256 of its name: the name itself may be long), the day the
link was made and the bare address; the signature is HMAC-SHA256 over it (16 bytes), with
a key derived from HERALD_SECRET_KEY for this purpose only. Nothing in it is a ledger id,
and without the key no other token can be made. A link older than `VALID_DAYS`, or
signed with another key, is refused with a clear 4xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

from herald.config import Settings

__all__ = ["VALID_DAYS", "BadToken", "Unsubscribe", "read_token", "token_for", "unsubscribe_url"]

#: How long a link keeps working (an old email's link is stale after this).
VALID_DAYS = 180
#: The longest header value written as is; a longer link (an absurdly long address or
#: public_url) is left out rather than folded inside the URL.
MAX_URL_CHARS = 490
_VERSION = b"\x01"
_ROUTE_BYTES = 8
_SIGNATURE_BYTES = 16
_DAY = 86_400


class BadToken(ValueError):
    """A link Herald did not make, or made too long ago; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Unsubscribe:
    """What a valid link asks: mute `address` for `route`."""

    route: str
    address: str
    issued_day: int


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"herald-unsubscribe-v1", hashlib.sha256).digest()


def _route_print(route: str) -> bytes:
    return hashlib.sha256(route.encode("utf-8", "surrogatepass")).digest()[:_ROUTE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if (
        not text
        or len(text) > 1000
        or not text.isascii()
        or not all(c.isalnum() or c in "-_" for c in text)
    ):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_for(secret: str, route: str, address: str, *, now: float | None = None) -> str:
    """The token for muting `address` (bare, lower case) on `route`."""
    day = int((time.time() if now is None else now) // _DAY)
    payload = _VERSION + _route_print(route) + day.to_bytes(3, "big") + address.encode("utf-8")
    signature = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def read_token(
    secret: str, token: str, routes: list[str], *, now: float | None = None
) -> Unsubscribe:
    """What a token asks, or BadToken: 400 malformed, 403 not signed by this key, 410
    older than VALID_DAYS, 404 its route is no longer configured."""
    body, dot, sig = token.partition(".")
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except (ValueError, binascii.Error):
        raise BadToken(400, "this unsubscribe link is malformed") from None
    if not dot or len(payload) < 1 + _ROUTE_BYTES + 3 + 3 or payload[:1] != _VERSION:
        raise BadToken(400, "this unsubscribe link is malformed")
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not hmac.compare_digest(expected, signature):
        raise BadToken(403, "this unsubscribe link is not valid (altered, or from another server)")
    day = int.from_bytes(payload[1 + _ROUTE_BYTES : 4 + _ROUTE_BYTES], "big")
    today = int((time.time() if now is None else now) // _DAY)
    if today - day > VALID_DAYS or day > today + 1:
        raise BadToken(410, f"this unsubscribe link has expired (links work for {VALID_DAYS} days)")
    printed = payload[1 : 1 + _ROUTE_BYTES]
    route = next((r for r in routes if hmac.compare_digest(_route_print(r), printed)), None)
    if route is None:
        raise BadToken(404, "the emails this link was for are no longer sent")
    try:
        address = payload[4 + _ROUTE_BYTES :].decode("utf-8")
    except UnicodeDecodeError:
        raise BadToken(400, "this unsubscribe link is malformed") from None
    return Unsubscribe(route, address, day)


def unsubscribe_url(settings: Settings, route: str, address: str) -> str | None:
    """The link for an email of `route` to `address` (bare, lower case), or None when
    `[api] public_url` is not set (or the link would be too long for a header)."""
    if not settings.public_url or not settings.secret_key:
        return None
    url = f"{settings.public_url}/unsubscribe/{token_for(settings.secret_key, route, address)}"
    return url if len(url) <= MAX_URL_CHARS else None
