"""The documents of `/api/recipients` and `/api/digest-schedules` (pydantic, published in
/openapi.json as the rest of the API's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: An address as given (its checks are herald/recipients.py's): bounded, one line.
AddressText = Annotated[
    str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Name = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
Short = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Operation = Annotated[str, StringConstraints(min_length=1, max_length=10, pattern=r"^[A-Za-z]+$")]


class Mute(BaseModel):
    route: str = Field(description="a route's name, or * for every route")
    until: datetime | None = Field(description="null: until unmuted")
    source: str = Field(description="operator, or unsubscribe (the one-click link)")
    since: datetime


class Recipient(BaseModel):
    address: str = Field(description="the bare address, lower case")
    display_name: str | None
    timezone: str | None = Field(description="IANA timezone their digests follow")
    created_at: datetime
    updated_at: datetime
    mutes: list[Mute] = Field(description="the mutes in force now")


class RecipientList(BaseModel):
    recipients: list[Recipient]
    next: str | None = Field(description="pass as `after` for the next page")
    limit: int


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: AddressText
    display_name: Name | None = None
    timezone: Short | None = None


class RecipientPatch(BaseModel):
    """Fields left out keep their value; null removes one."""

    model_config = ConfigDict(extra="forbid")
    display_name: Name | None = None
    timezone: Short | None = None


class MuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    route: Short = Field("*", description="a route's name, or * for every route")
    until: datetime | None = Field(
        None, description="ISO 8601, UTC if no zone; null: until unmuted"
    )


class UnmuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    route: Short | None = Field(None, description="one route's mute; null: every mute")


class Unmuted(BaseModel):
    address: str
    unmuted: list[str]


class DigestSchedule(BaseModel):
    id: int
    route: str
    recipient: str
    display_name: str | None
    schedule: str = Field(description="in effect: daily 09:00, weekly mon 09:00, monthly 31 09:00")
    timezone: str = Field(description="in effect")
    own_schedule: str | None = Field(description="the recipient's own; null: the route's")
    own_timezone: str | None = Field(description="the recipient's own; null: theirs or the route's")
    operations: list[str] | None = Field(description="only these operations; null: all")
    tables: list[str] | None = Field(description="only these tables; null: all")
    paused: bool
    cursor_at: datetime = Field(description="the end of the last period: the next digest holds "
                                "what came after")  # fmt: skip
    next_due_at: datetime
    created_at: datetime
    updated_at: datetime


class DigestScheduleList(BaseModel):
    schedules: list[DigestSchedule]
    next: int | None = Field(description="pass as `after` for the next page")
    limit: int


class DigestScheduleIn(BaseModel):
    """A recipient's own schedule for a digest route (created, or changed when it exists)."""

    model_config = ConfigDict(extra="forbid")
    route: Short
    recipient: AddressText
    schedule: Short | None = Field(None, description="null: the route's `digest`")
    timezone: Short | None = Field(None, description="null: the recipient's, else the route's")
    operations: list[Operation] | None = Field(None, max_length=3)
    tables: list[Short] | None = Field(None, max_length=50)
    paused: bool = False


class DigestSchedulePatch(BaseModel):
    """Fields left out keep their value; null goes back to the route's (or no filter)."""

    model_config = ConfigDict(extra="forbid")
    schedule: Short | None = None
    timezone: Short | None = None
    operations: list[Operation] | None = Field(None, max_length=3)
    tables: list[Short] | None = Field(None, max_length=50)
    paused: bool = Field(None, description="true or false; left out: kept")  # type: ignore[assignment]
