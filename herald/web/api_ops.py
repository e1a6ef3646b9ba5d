"""`/api/changes` (send a change now; its trace), `/api/orchestrate` ("sync now"),
`/api/stats`."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from herald.web import auth
from herald.web.api_jobs import _errors
from herald.web.auth import Principal
from herald.web.broker import BrokerDown
from herald.web.changes_in import max_body_bytes, parse_body, read_change
from herald.web.deps import BIGINT_MAX, database, probe, services
from herald.web.health import queue_names
from herald.web.models import (
    ChangeAccepted,
    ChangeTrace,
    OrchestrateAccepted,
    change_in_schema,
)
from herald.web.problems import Problem
from monitoring import jobs_api

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["changes"])


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes without reading it all."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Problem(415, "send the change as application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body is larger than {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/changes",
    status_code=202,
    response_model=ChangeAccepted,
    responses=_errors(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": change_in_schema()}},
        }
    },
)
async def post_change(
    request: Request, _who: Annotated[Principal, Depends(auth.operator)]
) -> JSONResponse:
    """Enter a change in the change log exactly as the trigger would, and wake the
    orchestrator: "send now" without waiting. 202, and `Location` is its trace."""
    limits = services(request).settings.limits
    raw = await _body(request, max_body_bytes(limits))
    change = read_change(parse_body(raw, limits), limits)

    def record() -> dict[str, Any]:
        with database(request) as conn:
            return jobs_api.record_change(conn, **change)

    row = await run_in_threadpool(record)
    return JSONResponse(
        {"change_id": row["id"], "status": "queued"},
        status_code=202,
        headers={"Location": f"/api/changes/{row['id']}"},
    )


def trace_status(trace: dict[str, Any]) -> str:
    change = trace["change"]
    return "queued" if change["claimed_at"] is None else change["outcome"] or "routed"


@router.get(
    "/changes/{change_id:int}", response_model=ChangeTrace, responses=_errors(401, 404, 422)
)
def get_change(
    request: Request,
    change_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
    _who: Annotated[Principal, Depends(auth.viewer)],
) -> dict[str, Any]:
    """The change's trace: claimed or not, its outcome (or why it was skipped), each
    notification with its jobs, summary and deliveries."""
    with database(request) as conn:
        trace = jobs_api.change_trace(conn, change_id)
    return {**trace, "status": trace_status(trace)}


@router.post(
    "/orchestrate",
    status_code=202,
    response_model=OrchestrateAccepted,
    responses=_errors(401, 403, 503),
)
def orchestrate(
    request: Request, _who: Annotated[Principal, Depends(auth.operator)]
) -> dict[str, str]:
    """ "Sync now": send the orchestrate message at once (it claims what is waiting)."""
    try:
        services(request).orchestrate_now()
    except Exception as exc:  # noqa: BLE001 - any broker failure is the same answer
        logger.warning("Sync now: the orchestrate message was not sent (%s)", type(exc).__name__)
        raise Problem(503, "the broker did not take the orchestrate message; try again") from None
    return {"status": "sent"}


@router.get("/stats", response_model=dict[str, Any], responses=_errors(401, 422, 503))
def stats(
    request: Request,
    _who: Annotated[Principal, Depends(auth.viewer)],
    hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24,
) -> dict[str, Any]:
    """`herald stats` as JSON over the last `hours`: counts by actor and status, success
    rate, mean and p95 processing time, overdue jobs, recent failures, breakers, queues."""
    with database(request) as conn:
        figures = jobs_api.stats(conn, hours=hours)
    try:
        queues = queue_names(services(request).settings.broker.queue_type)
        figures["queues"] = [q.__dict__ for q in probe(request).depths(queues)]
    except BrokerDown as exc:
        figures["queues"] = None
        figures["queues_error"] = f"RabbitMQ unreachable ({exc})"
    return figures
