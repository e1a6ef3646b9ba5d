"""The admin page's sign-in: a signed session cookie and a CSRF token for every form.

Signing in with a token sets `herald_session` (HttpOnly, SameSite=Strict, Secure behind
HTTPS): the role, a fingerprint of the token (not the token), an expiry and a nonce,
signed with HMAC-SHA256. Each form carries `csrf`, an HMAC of the session's nonce; the
sign-in form itself is protected by a double-submit cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from herald.web.auth import OPERATOR, RANK, Authenticator, Principal

SESSION_COOKIE = "herald_session"
SIGNIN_COOKIE = "herald_signin"
SESSION_SECONDS = 12 * 3600
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True)
class Session:
    principal: Principal
    nonce: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue(auth: Authenticator, principal: Principal, now: float | None = None) -> str:
    body = {
        "r": principal.role,
        "f": principal.fingerprint,
        "e": int((now or time.time()) + SESSION_SECONDS),
        "n": secrets.token_urlsafe(16),
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(auth.session_key, payload)}"


def read(auth: Authenticator, cookie: str | None) -> Session | None:
    """The session a cookie holds, or None (missing, forged, expired, or its token gone)."""
    if not cookie or len(cookie) > MAX_COOKIE_CHARS or "." not in cookie:
        return None
    payload, _, signature = cookie.partition(".")
    if not hmac.compare_digest(_sign(auth.session_key, payload), signature):
        return None
    try:
        body = json.loads(_unb64(payload))
        role, fingerprint, expires, nonce = body["r"], body["f"], int(body["e"]), str(body["n"])
    except (ValueError, KeyError, TypeError):
        return None
    if role not in RANK or expires < time.time():
        return None
    if auth.insecure:
        return Session(Principal(OPERATOR, "insecure"), nonce, expires)
    if not auth.knows(role, fingerprint):
        return None
    return Session(Principal(role, "session", fingerprint), nonce, expires)


def csrf_token(auth: Authenticator, session: Session) -> str:
    return _sign(auth.session_key, "csrf|" + session.nonce)


def csrf_ok(auth: Authenticator, session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(auth, session), presented or "")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
