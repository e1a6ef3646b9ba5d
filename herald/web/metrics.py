"""Counting and timing every request (herald_http_requests_total and
herald_http_request_duration_seconds), labelled by route template, never by raw path."""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitoring.metrics import ApiMetrics, create_api_metrics, init_api_labels

#: The route label of a request no route matched (a 404): one series, whatever the path.
UNMATCHED = "unmatched"


def route_labels(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path template) of every route (API routes, plain routes, mounts); HEAD
    requests are counted when they come, not pre-initialised."""
    labels = []
    for route in routes:
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if path is None:
            continue
        methods = getattr(route, "methods", None) or ({"GET"} if isinstance(route, Mount) else ())
        labels += [(method, path) for method in sorted(methods) if method != "HEAD"]
    return labels


class RequestMetrics:
    """Pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "GET")
            self.metrics.requests.labels(
                method=method, route=path, status=f"{status // 100}xx"
            ).inc()
            self.metrics.duration.labels(method=method, route=path).observe(
                time.perf_counter() - started
            )


def install(app: FastAPI, routes: list[BaseRoute]) -> None:
    """Count every request of `app` in its own registry and serve it at GET /metrics;
    `routes` (the routers' own, with their prefixes) are at zero from the first scrape."""
    registry = CollectorRegistry()
    metrics = create_api_metrics(registry)

    def exposition(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", exposition, methods=["GET"], include_in_schema=False)
    init_api_labels(metrics, [*route_labels(routes), ("GET", "/metrics"), ("GET", UNMATCHED)])
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.metrics_registry = registry
