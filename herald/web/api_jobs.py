"""`/api/jobs`: list and filter, one job, retry, cancel, bulk retry."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from herald.web import auth
from herald.web.auth import Principal
from herald.web.deps import (
    BIGINT_MAX,
    database,
    filter_query,
    job_filter,
    retry_filter,
    services,
)
from herald.web.models import (
    BulkRetryAccepted,
    Canceled,
    JobDetail,
    JobList,
    Problem,
    RetryAccepted,
)
from herald.web.problems import TITLES
from monitoring import jobs_api
from monitoring.jobs_api import JobFilter

MAX_LIMIT = 500

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": TITLES[code],
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    }
    for code in (400, 401, 403, 404, 409, 413, 415, 422, 500, 503)
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem documents a route may answer (every route may answer 500)."""
    return {code: ERRORS[code] for code in (*codes, 500)}


@router.get("", response_model=JobList, responses=_errors(400, 401, 422, 503))
def list_jobs(
    request: Request,
    where: Annotated[JobFilter, Depends(job_filter)],
    _who: Annotated[Principal, Depends(auth.viewer)],
    sort: Literal["id", "created_at"] = "id",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Jobs matching every filter given, newest first by default; `next` is the cursor of
    the following page (keyset pagination: pages stay fast however deep)."""
    with database(request) as conn:
        page = jobs_api.list_jobs(conn, where, sort=sort, order=order, limit=limit, cursor=cursor)
        counts = jobs_api.count_jobs(conn, where)
    return {
        "jobs": page.jobs,
        "next": page.next_cursor,
        "limit": limit,
        "sort": sort,
        "order": order,
        "counts": counts.counts,
        "counts_estimated": counts.estimated,
        "q_scope": f"the newest {jobs_api.Q_WINDOW:,} jobs" if where.q else None,
    }


@router.post(
    "/retry",
    status_code=202,
    response_model=BulkRetryAccepted,
    responses=_errors(400, 401, 403, 422, 503),
)
def retry_matching(
    request: Request,
    where: Annotated[JobFilter, Depends(retry_filter)],
    _who: Annotated[Principal, Depends(auth.operator)],
) -> JSONResponse:
    """Retry every job matching the filters; `status` is required (failed or canceled).
    At most 5,000 per request (`more` says when others match). `Location` lists the
    jobs now pending for the same filters."""
    with database(request) as conn:
        result = jobs_api.retry_matching(conn, where, publish=services(request).publish)
    location = "/api/jobs?" + urlencode(filter_query(where, status="pending"))
    body = BulkRetryAccepted(
        retried=len(result.retried),
        published=result.published,
        skipped=[{"id": i, "reason": r} for i, r in result.skipped],  # type: ignore[misc]
        more=result.more,
    )
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": location})


@router.get("/{job_id:int}", response_model=JobDetail, responses=_errors(401, 404, 422, 503))
def show_job(
    request: Request, job_id: JobId, _who: Annotated[Principal, Depends(auth.viewer)]
) -> dict[str, Any]:
    """One job: attempts, timings, last error, its notification, the summary (text, model,
    tokens; never the alias map) and its delivery (Message-ID, status, sent at)."""
    with database(request) as conn:
        return jobs_api.job_detail(conn, job_id)


@router.post(
    "/{job_id:int}/retry",
    status_code=202,
    response_model=RetryAccepted,
    responses=_errors(401, 403, 404, 409, 422, 503),
)
def retry_job(
    request: Request, job_id: JobId, _who: Annotated[Principal, Depends(auth.operator)]
) -> JSONResponse:
    """Retry a failed or canceled job (409 otherwise): back to pending, published again."""
    with database(request) as conn:
        result = jobs_api.retry_one(conn, job_id, publish=services(request).publish)
    body = RetryAccepted(job_id=job_id, status="pending", published=result.published > 0)
    return JSONResponse(
        body.model_dump(), status_code=202, headers={"Location": f"/api/jobs/{job_id}"}
    )


@router.delete(
    "/{job_id:int}", response_model=Canceled, responses=_errors(401, 403, 404, 409, 422, 503)
)
def cancel_job(
    request: Request, job_id: JobId, _who: Annotated[Principal, Depends(auth.operator)]
) -> dict[str, Any]:
    """Cancel a pending job (409 with the reason when it is running or finished)."""
    with database(request) as conn:
        previous = jobs_api.cancel_pending(conn, job_id)
    return {"job_id": job_id, "status": "canceled", "previous_status": previous}
