"""`/api/recipients` (the directory: names, timezones, mutes) and `/api/digest-schedules`
(GET, POST, PATCH, DELETE): viewers read, operators write. An unknown timezone, route or
schedule, or an address Herald would not send to, is a 400 problem saying which."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from herald import recipients
from herald.db import DictConnection
from herald.digests import store
from herald.recipients import ALL_ROUTES, RecipientError
from herald.web import auth
from herald.web.api_jobs import _errors
from herald.web.auth import Principal
from herald.web.deps import BIGINT_MAX, database, services
from herald.web.digest_models import (
    AddressText,
    DigestSchedule,
    DigestScheduleIn,
    DigestScheduleList,
    DigestSchedulePatch,
    MuteIn,
    Recipient,
    RecipientIn,
    RecipientList,
    RecipientPatch,
    Unmuted,
    UnmuteIn,
)
from herald.web.problems import Problem

MAX_LIMIT = 500

router = APIRouter(prefix="/api", tags=["recipients and digests"])

ScheduleId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
Address = Annotated[AddressText, Path(description="the address (any case, bare or with a name)")]


def _now() -> datetime:
    return datetime.now(UTC)


def _address(text: str) -> str:
    """The bare address of `text`, or a 400 saying why Herald would not write to it."""
    try:
        return recipients.parse_recipient(text, where="address")[1]
    except RecipientError as exc:
        raise Problem(400, str(exc)) from None


def _refused(exc: RecipientError | store.ScheduleNotFound) -> Problem:
    return Problem(404 if isinstance(exc, store.ScheduleNotFound) else 400, str(exc))


def _recipient(conn: DictConnection, address: str) -> dict[str, Any]:
    found = recipients.get_recipient(conn, address, _now())
    if found is None:
        raise Problem(404, f"no recipient {address}")
    return found


# -- /api/recipients --------------------------------------------------------------------------


@router.get("/recipients", response_model=RecipientList, responses=_errors(401, 422, 503))
def list_recipients(
    request: Request,
    _who: Annotated[Principal, Depends(auth.viewer)],
    muted: Annotated[bool, Query(description="only recipients muted somewhere now")] = False,
    after: Annotated[AddressText | None, Query(description="the last address of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    """Recipients by address, with the mutes in force now."""
    with database(request) as conn:
        rows = recipients.list_recipients(
            conn, _now(), muted_only=muted, after=after.lower() if after else None, limit=limit
        )
    return {"recipients": rows, "next": rows[-1]["address"] if len(rows) == limit else None,
            "limit": limit}  # fmt: skip


@router.get("/recipients/{address}", response_model=Recipient,
            responses=_errors(400, 401, 404, 422, 503))  # fmt: skip
def get_recipient(
    request: Request, address: Address, _who: Annotated[Principal, Depends(auth.viewer)]
) -> dict[str, Any]:
    with database(request) as conn:
        return _recipient(conn, _address(address))


@router.post("/recipients", response_model=Recipient,
             responses=_errors(400, 401, 403, 422, 503))  # fmt: skip
def put_recipient(
    request: Request, body: RecipientIn, _who: Annotated[Principal, Depends(auth.operator)]
) -> dict[str, Any]:
    """Create a recipient, or set its display name and timezone (null removes one)."""
    address = _address(body.address)
    return _change(request, address, body.display_name, body.timezone, set_name=True,
                   set_timezone=True)  # fmt: skip


@router.patch("/recipients/{address}", response_model=Recipient,
              responses=_errors(400, 401, 403, 404, 422, 503))  # fmt: skip
def patch_recipient(
    request: Request,
    address: Address,
    body: RecipientPatch,
    _who: Annotated[Principal, Depends(auth.operator)],
) -> dict[str, Any]:
    """Change the fields given; a changed timezone moves the next due time of their digests."""
    bare = _address(address)
    with database(request) as conn:
        _recipient(conn, bare)
    given = body.model_fields_set
    return _change(request, bare, body.display_name, body.timezone,
                   set_name="display_name" in given, set_timezone="timezone" in given)  # fmt: skip


def _change(
    request: Request,
    address: str,
    name: str | None,
    timezone: str | None,
    *,
    set_name: bool,
    set_timezone: bool,
) -> dict[str, Any]:
    settings = services(request).settings
    with database(request) as conn, conn.transaction():
        try:
            recipients.set_recipient(conn, address, display_name=name, timezone=timezone,
                                     set_name=set_name, set_timezone=set_timezone)  # fmt: skip
        except RecipientError as exc:
            raise _refused(exc) from None
        if set_timezone:
            store.reconcile(conn, settings, _now())
        return _recipient(conn, address)


@router.delete("/recipients/{address}", status_code=204,
               responses=_errors(400, 401, 403, 404, 422, 503))  # fmt: skip
def delete_recipient(
    request: Request, address: Address, _who: Annotated[Principal, Depends(auth.operator)]
) -> None:
    """Remove a recipient from the directory, with their mutes."""
    with database(request) as conn:
        if not recipients.delete_recipient(conn, _address(address)):
            raise Problem(404, f"no recipient {address}")


@router.post("/recipients/{address}/mute", response_model=Recipient,
             responses=_errors(400, 401, 403, 422, 503))  # fmt: skip
def mute(
    request: Request,
    address: Address,
    body: MuteIn,
    _who: Annotated[Principal, Depends(auth.operator)],
) -> dict[str, Any]:
    """Send this recipient nothing from a route (`*`: any), until a time or until unmuted."""
    bare = _address(address)
    route = body.route
    if route != ALL_ROUTES:
        try:
            recipients.check_route(services(request).settings, route)
        except RecipientError as exc:
            raise _refused(exc) from None
    until = body.until.replace(tzinfo=UTC) if body.until and not body.until.tzinfo else body.until
    with database(request) as conn:
        recipients.mute(conn, bare, route, until=until)
        return _recipient(conn, bare)


@router.post("/recipients/{address}/unmute", response_model=Unmuted,
             responses=_errors(400, 401, 403, 404, 422, 503))  # fmt: skip
def unmute(
    request: Request,
    address: Address,
    body: UnmuteIn,
    _who: Annotated[Principal, Depends(auth.operator)],
) -> dict[str, Any]:
    """Lift one route's mute, or all of them; 404 when there was none."""
    bare = _address(address)
    with database(request) as conn:
        lifted = recipients.unmute(conn, bare, body.route)
    if not lifted:
        raise Problem(404, f"{bare} is not muted" + (f" for route {body.route}" if body.route
                                                      else ""))  # fmt: skip
    return {"address": bare, "unmuted": lifted}


# -- /api/digest-schedules --------------------------------------------------------------------


@router.get("/digest-schedules", response_model=DigestScheduleList,
            responses=_errors(400, 401, 422, 503))  # fmt: skip
def list_schedules(
    request: Request,
    _who: Annotated[Principal, Depends(auth.viewer)],
    route: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]+$")] = None,
    recipient: Annotated[AddressText | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    """Digest schedules by id: each recipient's calendar, when it is next due, its filters."""
    bare = _address(recipient) if recipient else None
    with database(request) as conn:
        rows = store.list_schedules(conn, route=route, recipient=bare, after=after, limit=limit)
    return {"schedules": rows, "next": rows[-1]["id"] if len(rows) == limit else None,
            "limit": limit}  # fmt: skip


@router.get("/digest-schedules/{schedule_id}", response_model=DigestSchedule,
            responses=_errors(401, 404, 422, 503))  # fmt: skip
def get_schedule(
    request: Request, schedule_id: ScheduleId, _who: Annotated[Principal, Depends(auth.viewer)]
) -> dict[str, Any]:
    with database(request) as conn:
        try:
            return store.get_schedule(conn, schedule_id)
        except store.ScheduleNotFound as exc:
            raise _refused(exc) from None


@router.post("/digest-schedules", status_code=201, response_model=DigestSchedule,
             responses=_errors(400, 401, 403, 422, 503))  # fmt: skip
def post_schedule(
    request: Request, body: DigestScheduleIn, _who: Annotated[Principal, Depends(auth.operator)]
) -> JSONResponse:
    """A recipient's own schedule for a digest route (changed when they have one already).
    201, and `Location` is the schedule."""
    settings = services(request).settings
    bare = _address(body.recipient)
    change = store.Change(
        schedule=body.schedule, timezone=body.timezone, operations=body.operations,
        tables=body.tables, paused=body.paused,
    )  # fmt: skip
    with database(request) as conn, conn.transaction():
        try:
            route = recipients.check_route(settings, body.route, digest=True)
            row = store.set_schedule(conn, settings, route, bare, change, _now())
        except (RecipientError, store.ScheduleNotFound) as exc:
            raise _refused(exc) from None
    document = DigestSchedule.model_validate(row).model_dump(mode="json")
    return JSONResponse(document, status_code=201,
                        headers={"Location": f"/api/digest-schedules/{row['id']}"})  # fmt: skip


@router.patch("/digest-schedules/{schedule_id}", response_model=DigestSchedule,
              responses=_errors(400, 401, 403, 404, 422, 503))  # fmt: skip
def patch_schedule(
    request: Request,
    schedule_id: ScheduleId,
    body: DigestSchedulePatch,
    _who: Annotated[Principal, Depends(auth.operator)],
) -> dict[str, Any]:
    """Change what is given; a changed time, day or timezone computes the next due time
    again, and resuming computes it from now."""
    settings = services(request).settings
    given = {k: getattr(body, k) for k in body.model_fields_set}
    with database(request) as conn, conn.transaction():
        try:
            current = store.get_schedule(conn, schedule_id)
            return store.set_schedule(
                conn, settings, current["route"], current["recipient"], store.Change(**given),
                _now(), schedule_id=schedule_id,
            )  # fmt: skip
        except (RecipientError, store.ScheduleNotFound) as exc:
            raise _refused(exc) from None


@router.delete("/digest-schedules/{schedule_id}",
               responses={200: {"model": DigestSchedule}, 204: {"description": "deleted"},
                          **_errors(401, 403, 404, 422, 503)})  # fmt: skip
def delete_schedule(
    request: Request, schedule_id: ScheduleId, _who: Annotated[Principal, Depends(auth.operator)]
) -> Any:
    """Drop the recipient's own schedule: 200 with the route's schedule in effect again, or
    204 when the route is no longer in digest mode and the schedule is gone."""
    settings = services(request).settings
    with database(request) as conn, conn.transaction():
        try:
            row = store.delete_schedule(conn, settings, schedule_id, _now())
        except store.ScheduleNotFound as exc:
            raise _refused(exc) from None
    if row is None:
        return Response(status_code=204)
    return JSONResponse(DigestSchedule.model_validate(row).model_dump(mode="json"))
