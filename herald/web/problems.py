"""Errors as `application/problem+json` (RFC 9457): type, title, status, detail.

Every error the API answers goes through here, including the ones FastAPI raises itself
(validation, unknown routes) and any unexpected exception: a 500 says only that something
went wrong (the traceback goes to the server's log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg_pool
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from monitoring.inspect import JobNotFound, OperatorError, Refused, UnknownStatus
from monitoring.jobs_api import BadCursor, ChangeNotFound

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://herald.invalid/problems/"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.kind = status, detail, kind
        self.headers, self.extra = headers or {}, extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    title = TITLES.get(status, "Error")
    body = {
        "type": TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def status_for(exc: OperatorError) -> int:
    if isinstance(exc, JobNotFound | ChangeNotFound):
        return 404
    if isinstance(exc, Refused):
        return 409
    if isinstance(exc, UnknownStatus | BadCursor):
        return 400
    return 400


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    errors = []
    for error in exc.errors()[:20]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        errors.append({"field": where, "message": str(error.get("msg", "invalid"))[:200]})
    first = errors[0] if errors else {"field": "request", "message": "invalid"}
    return f"{first['field']}: {first['message']}", errors


def handle(exc: BaseException) -> JSONResponse:
    """The problem document for any exception (the handlers below, and the page's JSON)."""
    if isinstance(exc, Problem):
        return problem_response(
            exc.status, exc.detail, kind=exc.kind, headers=exc.headers, extra=exc.extra
        )
    if isinstance(exc, OperatorError):
        return problem_response(status_for(exc), str(exc))
    if isinstance(exc, RequestValidationError):
        detail, errors = _validation_detail(exc)
        return problem_response(422, detail, extra={"errors": errors})
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        logger.warning("Database unavailable: %s", type(exc).__name__)
        return problem_response(503, "the database is unavailable; try again shortly")
    logger.error("Unexpected error answering a request", exc_info=exc)
    return problem_response(500, "something went wrong on our side; it has been logged")


async def problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    return handle(exc)
