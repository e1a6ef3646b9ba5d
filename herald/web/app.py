"""The application: routers, authentication, problem+json errors, metrics, the page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import herald
from herald.web import api_jobs, api_ops, health, metrics, pages
from herald.web.auth import Authenticator
from herald.web.broker import BrokerProbe, probe_for
from herald.web.problems import Problem, problem_handler
from herald.web.services import WebServices

STATIC = Path(__file__).parent / "static"

#: Sent with every answer: no framing, no sniffing, no referrer leaks, scripts and styles
#: from this server only (the page has no inline script).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


def create_app(
    services: WebServices, *, insecure_no_auth: bool = False, broker: BrokerProbe | None = None
) -> FastAPI:
    """The API and the admin page over `services`. `broker` overrides the probe built from
    `settings.broker_url` (readiness, queue depths)."""
    app = FastAPI(
        title="Herald",
        version=getattr(herald, "__version__", "0"),
        description=(
            "Herald's operator API: the job ledger, the change log, health. "
            "Authenticate with `Authorization: Bearer TOKEN` (HERALD_API_TOKENS): "
            "viewer tokens read, operator tokens also retry, cancel, send and sync."
        ),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.auth = Authenticator(services.settings.api_tokens, insecure=insecure_no_auth)
    app.state.broker = broker or probe_for(services.settings.broker_url)
    routers = (health.router, api_jobs.router, api_ops.router, pages.router)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for error in (Exception, HTTPException, RequestValidationError, Problem):
        app.add_exception_handler(error, _route_error)
    metrics.install(app, [route for router in routers for route in router.routes])
    app.add_middleware(SecurityHeaders)
    app.router.add_event_handler("shutdown", app.state.broker.close)
    return app


async def _route_error(request: Request, exc: Exception) -> Response:
    """The page's routes answer errors in HTML, everything else in problem+json."""
    if pages.is_page(request):
        return await pages.error_page(request, exc)
    return await problem_handler(request, exc)
