"""The admin page's plumbing: who is signed in, CSRF on every form, rendering, flashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from herald.web import sessions
from herald.web.auth import OPERATOR, Authenticator, Principal
from herald.web.problems import Problem
from herald.web.sessions import SESSION_COOKIE, Session

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLASH_COOKIE = "herald_flash"
MAX_FORM_BYTES = 16 * 1024
#: Page paths (everything else answers errors in problem+json).
PAGE_PREFIXES = ("/jobs", "/changes", "/signin", "/signout", "/orchestrate")


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""


def is_page(request: Request) -> bool:
    path = request.url.path
    return path == "/" or path.startswith(PAGE_PREFIXES)


def auth_of(request: Request) -> Authenticator:
    found: Authenticator = request.app.state.auth
    return found


@dataclass
class Visitor:
    """A signed-in visitor of the page: their session, and its cookie when it is new
    (--insecure-no-auth issues one on the first visit, so forms still carry a CSRF token)."""

    session: Session
    new_cookie: str | None = None

    @property
    def principal(self) -> Principal:
        return self.session.principal


def visitor(request: Request) -> Visitor:
    """Dependency of every page: the session, or a redirect to sign in."""
    auth = auth_of(request)
    session = sessions.read(auth, request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return Visitor(session)
    if auth.insecure:
        cookie = sessions.issue(auth, Principal(OPERATOR, "insecure"))
        found = sessions.read(auth, cookie)
        assert found is not None
        return Visitor(found, cookie)
    raise SignInRequired()


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, bounded; the first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Problem(413, "the form is too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "the form could not be read") from None
    return {key: values[0] for key, values in fields.items()}


def check_form(request: Request, who: Visitor, form: dict[str, str], *, operate: bool) -> None:
    """Every form's CSRF token; a write needs the operator role."""
    if not sessions.csrf_ok(auth_of(request), who.session, form.get("csrf")):
        raise Problem(403, "this form's CSRF token is missing or stale: reload the page")
    if operate and not who.principal.can_operate:
        raise Problem(403, "your role is viewer: retry, cancel and sync need operator")


def safe_next(target: str | None, default: str = "/") -> str:
    """A path on this server to go back to, never another site (no scheme, no //, no \\)."""
    if not target or len(target) > 2000 or not target.startswith("/"):
        return default
    if target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    return target


def _flash_sign(auth: Authenticator, text: str) -> str:
    return hmac.new(auth.session_key, b"flash|" + text.encode(), hashlib.sha256).hexdigest()[:32]


def redirect(request: Request, target: str, flash: str | None = None) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    if flash:
        value = f"{_flash_sign(auth_of(request), flash)}|{flash[:300]}"
        sessions.set_cookie(response, request, FLASH_COOKIE, value, max_age=60)
    return response


def take_flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE, "")
    signature, _, text = raw.partition("|")
    if text and hmac.compare_digest(_flash_sign(auth_of(request), text), signature):
        return text
    return None


def render(
    request: Request,
    who: Visitor | None,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    auth = auth_of(request)
    flash = take_flash(request)
    page = {
        "request": request,
        "who": who.principal if who else None,
        "can_operate": bool(who and who.principal.can_operate),
        "csrf": sessions.csrf_token(auth, who.session) if who else "",
        "insecure": auth.insecure,
        "flash": flash,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    }
    response = TEMPLATES.TemplateResponse(request, template, page, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    if who and who.new_cookie:
        sessions.set_cookie(response, request, SESSION_COOKIE, who.new_cookie,
                            max_age=sessions.SESSION_SECONDS)  # fmt: skip
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def signin_nonce() -> str:
    return secrets.token_urlsafe(24)


def utc(value: datetime | None) -> str:
    """A time as the page prints it before the browser localises it."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def query(values: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


TEMPLATES.env.filters["utc"] = utc
TEMPLATES.env.filters["iso"] = iso


def merge(values: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {**values, **more}


def without(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in keys}


TEMPLATES.env.globals.update(query=query, merge=merge, without=without)
