"""The application: routers, authentication, problem+json errors, metrics, the page."""

from __future__ import annotations

from pathlib import Path

import psycopg
import psycopg_pool
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import herald
from herald.web import api_digests, api_jobs, api_ops, health, metrics, pages, unsubscribe
from herald.web.auth import Authenticator
from herald.web.broker import BrokerDown, BrokerProbe, probe_for
from herald.web.page_support import SignInRequired
from herald.web.problems import Problem, problem_handler
from herald.web.services import WebServices
from monitoring.inspect import OperatorError

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
    routers = (health.router, api_jobs.router, api_ops.router, api_digests.router,
               unsubscribe.router, pages.router)  # fmt: skip
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Handled where they are raised (Starlette re-raises what reaches its `Exception`
    # handler after answering, for the server to log as a crash): every expected error.
    expected = (HTTPException, RequestValidationError, Problem, OperatorError, BrokerDown,
                psycopg.OperationalError, psycopg_pool.PoolTimeout, SignInRequired)  # fmt: skip
    for error in (Exception, *expected):
        app.add_exception_handler(error, _route_error)
    app.state.routes = [route for router in routers for route in router.routes]
    metrics.install(app, app.state.routes)
    app.add_middleware(SecurityHeaders)
    app.router.add_event_handler("shutdown", app.state.broker.close)
    return app


async def _route_error(request: Request, exc: Exception) -> Response:
    """The page's routes answer errors in HTML, everything else in problem+json."""
    if pages.is_page(request):
        return await pages.error_page(request, exc)
    response = await problem_handler(request, exc)
    if response.status_code == 405:
        response.headers["allow"] = ", ".join(_allowed(request))
    return response


def _allowed(request: Request) -> list[str]:
    """Every method some route of this path takes (Starlette names only the first route's)."""
    path = request.url.path
    methods = {
        method
        for route in request.app.state.routes
        if getattr(route, "path_regex", None) is not None and route.path_regex.match(path)
        for method in getattr(route, "methods", None) or ()
    }
    return sorted(methods)
