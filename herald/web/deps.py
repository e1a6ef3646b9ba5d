"""What every route needs: the services, a database connection, the shared filters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from pydantic import StringConstraints

from herald.db import DictConnection
from herald.web.broker import BrokerProbe
from herald.web.models import Status
from herald.web.problems import Problem
from herald.web.services import WebServices
from monitoring.jobs_api import JobFilter

#: Seconds a request waits for a pooled connection before answering 503.
POOL_TIMEOUT_SECONDS = 5.0

#: Text parameters: bounded, and never a NUL (PostgreSQL text cannot hold one).
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
BIGINT_MAX = 2**63 - 1


def services(request: Request) -> WebServices:
    found: WebServices = request.app.state.services
    return found


def probe(request: Request) -> BrokerProbe:
    found: BrokerProbe = request.app.state.broker
    return found


@contextmanager
def database(request: Request) -> Iterator[DictConnection]:
    """A pooled connection in autocommit mode (the store's writes open their own
    transactions); a pool that cannot give one in time becomes a 503."""
    pool = services(request).pool
    with pool.connection(timeout=POOL_TIMEOUT_SECONDS) as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.autocommit = False


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


#: ISO 8601 as the filters take it: a real date (years 1900 to 2999; February 29 in leap
#: years only), or a date and time, with or without a zone (none: UTC). Alternation only,
#: no nested repetition: linear on any input, and every string it admits parses.
_YEAR = "(?:19|2[0-9])[0-9]{2}"
_LEAP_YEAR = "(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2000|2400|2800)"
_DATE = (
    f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    f"|{_LEAP_YEAR}-02-29)"
)
_TIME = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_ZONE = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
ISO_TIME = f"^{_DATE}(?:{_TIME}{_ZONE}?)?$"


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise Problem(422, f"{name}: not a date and time ({value[:40]!r})") from None


IsoTime = Annotated[str, StringConstraints(max_length=40, pattern=ISO_TIME)]


def other_filters(
    actor: Annotated[Text | None, Query(description="enrich or send_email")] = None,
    queue: Annotated[Text | None, Query(description="enrich or email")] = None,
    route: Annotated[Text | None, Query(description="the route's name")] = None,
    table: Annotated[Text | None, Query(description="table, with or without its schema")] = None,
    recipient: Annotated[Text | None, Query(description="exact address")] = None,
    change_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    created_after: Annotated[IsoTime | None, Query(description="ISO 8601; UTC if no zone")] = None,
    created_before: Annotated[IsoTime | None, Query(description="ISO 8601; UTC if no zone")] = None,
    q: Annotated[
        Text | None,
        Query(description="free text in the last error or the recipient (newest 50,000 jobs)"),
    ] = None,
) -> JobFilter:
    return JobFilter(
        actor=actor,
        queue=queue,
        route=route,
        table=table,
        recipient=recipient,
        change_id=change_id,
        created_after=_time(created_after, "created_after"),
        created_before=_time(created_before, "created_before"),
        q=q,
    )


def job_filter(
    rest: Annotated[JobFilter, Depends(other_filters)],
    status: Annotated[Status | None, Query(description="one status")] = None,
) -> JobFilter:
    """The list's filters."""
    return dataclasses.replace(rest, status=status)


def retry_filter(
    rest: Annotated[JobFilter, Depends(other_filters)],
    status: Annotated[Literal["failed", "canceled"], Query(description="jobs to retry")],
) -> JobFilter:
    """A bulk retry's filters: the list's, with a status that can be retried (required)."""
    return dataclasses.replace(rest, status=status)


def filter_query(where: JobFilter, **override: Any) -> dict[str, str]:
    """The filters as query parameters (for links that keep them)."""
    values = {**where.__dict__, **override}
    out = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out
