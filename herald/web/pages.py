"""The admin page at `/`: sign in, overview, jobs (filters, retry, cancel, retry all),
one job, a change's trace. Server-rendered (Jinja2), with a small vendored script that
localises times and refreshes the page's content every few seconds."""

from __future__ import annotations

import dataclasses
import hmac
import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from herald.web import sessions
from herald.web.api_jobs import MAX_LIMIT
from herald.web.api_ops import trace_status
from herald.web.broker import BrokerDown
from herald.web.deps import BIGINT_MAX, database, filter_query, job_filter, probe, services
from herald.web.health import health_document
from herald.web.page_support import (
    SESSION_COOKIE,
    SignInRequired,
    Visitor,
    auth_of,
    check_form,
    is_page,
    read_form,
    redirect,
    render,
    safe_next,
    signin_nonce,
    visitor,
)
from herald.web.problems import Problem, handle
from monitoring import jobs_api
from monitoring.inspect import OperatorError
from monitoring.jobs_api import JobFilter
from monitoring.metrics import KNOWN_ACTORS

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
Who = Annotated[Visitor, Depends(visitor)]
__all__ = ["error_page", "is_page", "router"]


# -- signing in and out ----------------------------------------------------------------------


@router.get("/signin")
def signin_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query's name
    nonce = signin_nonce()
    response = render(request, None, "signin.html", {"nonce": nonce, "next": safe_next(next)})
    sessions.set_cookie(response, request, sessions.SIGNIN_COOKIE, nonce, max_age=600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await read_form(request)
    cookie = request.cookies.get(sessions.SIGNIN_COOKIE, "")
    if not cookie or not _same(cookie, form.get("csrf", "")):
        raise Problem(403, "the sign-in form is stale or did not come from this page: reload it")
    principal = auth_of(request).role_for(form.get("token", "").strip())
    if principal is None:
        nonce = signin_nonce()
        context = {"nonce": nonce, "next": safe_next(form.get("next")), "error": True}
        response = render(request, None, "signin.html", context, status_code=401)
        sessions.set_cookie(response, request, sessions.SIGNIN_COOKIE, nonce, max_age=600)
        return response
    response = redirect(request, safe_next(form.get("next")))
    sessions.set_cookie(response, request, SESSION_COOKIE,
                        sessions.issue(auth_of(request), principal),
                        max_age=sessions.SESSION_SECONDS)  # fmt: skip
    response.delete_cookie(sessions.SIGNIN_COOKIE, path="/")
    return response


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@router.post("/signout")
async def signout(request: Request, who: Who) -> Response:
    check_form(request, who, await read_form(request), operate=False)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- reading ----------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, who: Who) -> Response:
    doc = health_document(services(request), probe(request))
    with database(request) as conn:
        counts = jobs_api.count_jobs(conn, JobFilter())
        failures = jobs_api.list_jobs(conn, JobFilter(status="failed"), limit=5).jobs
    return render(request, who, "overview.html", {
        "health": doc, "checks": doc["checks"], "counts": counts, "failures": failures,
        "refresh": 5,
    })  # fmt: skip


@router.get("/jobs")
def jobs(
    request: Request,
    who: Who,
    where: Annotated[JobFilter, Depends(job_filter)],
    sort: Literal["id", "created_at"] = "id",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    with database(request) as conn:
        page = jobs_api.list_jobs(conn, where, sort=sort, order=order, limit=limit, cursor=cursor)
        counts = jobs_api.count_jobs(conn, where)
    filters = filter_query(where)
    paging = {"sort": sort, "order": order, "limit": limit}
    return render(request, who, "jobs.html", {
        "jobs": page.jobs, "next_cursor": page.next_cursor, "cursor": cursor,
        "where": where, "filters": filters, "paging": paging, "counts": counts,
        "actors": sorted(KNOWN_ACTORS), "queues": sorted(set(KNOWN_ACTORS.values())),
        "routes": [r.name for r in services(request).settings.routes],
        "statuses": list(jobs_api.STATUSES), "refresh": 5,
        "q_window": jobs_api.Q_WINDOW,
    })  # fmt: skip


JobId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


@router.get("/jobs/{job_id:int}")
def job(request: Request, who: Who, job_id: JobId) -> Response:
    with database(request) as conn:
        detail = jobs_api.job_detail(conn, job_id)
    return render(request, who, "job.html", {**detail, "refresh": 5})


@router.get("/changes/{change_id:int}")
def change(request: Request, who: Who, change_id: JobId) -> Response:
    with database(request) as conn:
        trace = jobs_api.change_trace(conn, change_id)
    return render(request, who, "change.html",
                  {**trace, "status": trace_status(trace), "refresh": 5})  # fmt: skip


# -- acting -----------------------------------------------------------------------------------


@router.post("/jobs/{job_id:int}/retry")
async def retry(request: Request, who: Who, job_id: JobId) -> Response:
    form = await read_form(request)
    check_form(request, who, form, operate=True)

    def work() -> str:
        with database(request) as conn:
            result = jobs_api.retry_one(conn, job_id, publish=services(request).publish)
        return f"Job {job_id} is pending again" + (
            "" if result.published else " (publishing later)"
        )

    return await _act(request, form, work, default=f"/jobs/{job_id}")


@router.post("/jobs/{job_id:int}/cancel")
async def cancel(request: Request, who: Who, job_id: JobId) -> Response:
    form = await read_form(request)
    check_form(request, who, form, operate=True)

    def work() -> str:
        with database(request) as conn:
            jobs_api.cancel_pending(conn, job_id)
        return f"Job {job_id} is canceled"

    return await _act(request, form, work, default=f"/jobs/{job_id}")


@router.post("/jobs/retry")
async def retry_all(
    request: Request, who: Who, matching: Annotated[JobFilter, Depends(job_filter)]
) -> Response:
    """Retry all failed jobs matching the filter (in the form's query string): a
    confirmation page first."""
    form = await read_form(request)
    check_form(request, who, form, operate=True)
    where = dataclasses.replace(matching, status="failed")
    back = "/jobs?" + _urlencode(filter_query(where))
    if form.get("confirm") != "yes":

        def count() -> Any:
            with database(request) as conn:
                return jobs_api.count_jobs(conn, where)

        counts = await run_in_threadpool(count)
        return render(request, who, "confirm_retry.html", {
            "filters": filter_query(where), "count": counts.counts.get("failed", 0),
            "estimated": counts.estimated, "back": back,
        })  # fmt: skip

    def work() -> str:
        with database(request) as conn:
            result = jobs_api.retry_matching(conn, where, publish=services(request).publish)
        more = "; more match: run it again" if result.more else ""
        return f"Retried {len(result.retried)} failed job(s), skipped {len(result.skipped)}{more}"

    return await _act(
        request, {"next": back.replace("?", "?status=failed&", 1)}, work, default=back
    )


@router.post("/orchestrate")
async def sync_now(request: Request, who: Who) -> Response:
    form = await read_form(request)
    check_form(request, who, form, operate=True)

    def work() -> str:
        try:
            services(request).orchestrate_now()
        except Exception as exc:  # noqa: BLE001 - any broker failure reads the same
            logger.warning("Sync now failed (%s)", type(exc).__name__)
            raise Problem(503, "the broker did not take the orchestrate message") from None
        return "Sync requested: the orchestrator runs now"

    return await _act(request, form, work, default="/")


async def _act(request: Request, form: dict[str, str], work: Any, *, default: str) -> Response:
    """Run an action; back where the form came from, with what happened (or why not)."""
    target = safe_next(form.get("next"), default)
    try:
        message = await run_in_threadpool(work)
    except OperatorError as exc:
        return redirect(request, target, flash=f"Not done: {exc}")
    return redirect(request, target, flash=message)


def _urlencode(values: dict[str, str]) -> str:
    return urlencode(values)


# -- errors -----------------------------------------------------------------------------------


async def error_page(request: Request, exc: Exception) -> Response:
    """An error on a page: the sign-in form when signed out, else a page saying what."""
    if isinstance(exc, SignInRequired):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = "/signin" + ("" if here == "/" else "?" + _urlencode({"next": here}))
        return RedirectResponse(target, status_code=303)
    if isinstance(exc, RequestValidationError) and request.method == "GET":
        # The filter form sends its empty fields too: the same address without them.
        kept = [(k, v) for k, v in request.query_params.multi_items() if v.strip()]
        if len(kept) < len(request.query_params.multi_items()):
            return RedirectResponse(f"{request.url.path}?{urlencode(kept)}", status_code=303)
    problem = handle(exc)
    detail = _detail(exc)
    return render(request, None, "error.html",
                  {"status": problem.status_code, "detail": detail},
                  status_code=problem.status_code)  # fmt: skip


def _detail(exc: Exception) -> str:
    if isinstance(exc, Problem):
        return exc.detail
    if isinstance(exc, OperatorError):
        return str(exc)
    if isinstance(exc, RequestValidationError):
        return "the address has a value this page cannot use: check the filters"
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, BrokerDown):
        return "RabbitMQ is unreachable"
    return "something went wrong on our side; it has been logged"
