"""The one-click unsubscribe link (RFC 8058) that every email carries when `[api]
public_url` is set: GET shows a confirmation page, POST mutes the recipient for the route.

No token or session is needed: the link's own signature (herald/unsubscribe.py) is the
proof. POST mutes at once, as RFC 8058 asks of a mail client's `List-Unsubscribe=One-Click`
(the body is not needed, and not read past a few kilobytes). A link that was altered,
signed with another key, too old, or for a route no longer configured gets a clear 4xx
page. These pages are not part of the API's schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from herald import recipients
from herald.unsubscribe import BadToken, Unsubscribe, read_token
from herald.web.deps import database, services

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: Longest token read from the path, and most of a POST body read.
MAX_TOKEN_CHARS = 1200
MAX_BODY_BYTES = 4096
_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
#: A page for people, never cached or indexed (the path holds the address, signed).
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _page(status: int, title: str, message: str, *, confirm: bool = False) -> HTMLResponse:
    html = _PAGES.get_template("unsubscribe.html").render(
        title=title, message=message, confirm=confirm
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _read(request: Request, token: str) -> Unsubscribe | HTMLResponse:
    settings = services(request).settings
    if not settings.secret_key or not settings.public_url:
        return _page(404, "Link not in use", "This Herald does not send unsubscribe links.")
    if len(token) > MAX_TOKEN_CHARS:
        return _page(400, "Link not valid", "This unsubscribe link is malformed.")
    try:
        return read_token(settings.secret_key, token, [r.name for r in settings.routes])
    except BadToken as exc:
        return _page(exc.status, "Link not valid", str(exc))


def _what(asked: Unsubscribe) -> str:
    return f"emails of “{asked.route}” to {asked.address}"


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str) -> HTMLResponse:
    """The confirmation page: what the link stops, and one button."""
    asked = _read(request, token)
    if isinstance(asked, HTMLResponse):
        return asked
    return _page(200, "Unsubscribe", f"Stop the {_what(asked)}?", confirm=True)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    """Mute the recipient for the route (RFC 8058 one-click, or the page's button)."""
    size = 0
    async for chunk in request.stream():  # drained, bounded, not needed
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    asked = _read(request, token)
    if isinstance(asked, HTMLResponse):
        return asked

    def mute() -> None:
        with database(request) as conn:
            recipients.mute(conn, asked.address, asked.route, source="unsubscribe")

    await run_in_threadpool(mute)
    logger.info("Unsubscribed a recipient from route %r (one-click link)", asked.route)
    return _page(200, "Unsubscribed", f"You will get no more {_what(asked)}.")
