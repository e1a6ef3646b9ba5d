"""When a digest is due, across every DST transition from 2020 to 2035.

Zones: America/New_York, Europe/London, Australia/Lord_Howe (a 30-minute shift),
Asia/Kathmandu (+05:45), Africa/Johannesburg (no DST) and UTC. The rules under test
(herald/schedules.py): strictly increasing, exactly one per period, never at a
local time that does not exist (spring forward: the first valid minute after), once at the
first occurrence of a repeated time (fall back), month ends clamped and the asked day
back the month after.
"""

from __future__ import annotations

import calendar
import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.schedules import (
    Schedule,
    ScheduleError,
    due_on,
    latest_due,
    next_due,
    parse_schedule,
    zone,
)

ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Africa/Johannesburg",
    "UTC",
)
START, END = datetime(2020, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)


@functools.cache
def transitions(name: str) -> tuple[datetime, ...]:
    """Every instant in 2020-2035 at which `name`'s UTC offset changes (to the minute)."""
    tz = ZoneInfo(name)
    found = []
    day = START
    while day < END:
        nxt = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            low, high = day, nxt
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high.replace(second=0, microsecond=0))
        day = nxt
    return tuple(found)


def exists(wall: datetime, tz: ZoneInfo) -> bool:
    """Does this local wall time happen on that day in `tz`?"""
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def check_instant(instant: datetime, day: date, at: time, tz: ZoneInfo) -> None:
    """`instant` is local `at` on `day`, or the first valid minute after it; the first
    occurrence when that time happens twice."""
    wall = instant.astimezone(tz).replace(tzinfo=None)
    asked = datetime.combine(day, at)
    assert exists(wall, tz), f"{instant} is a local time that does not exist in {tz}"
    assert wall >= asked
    probe = asked
    while probe < wall:  # every minute skipped over really does not exist
        assert not exists(probe, tz), f"{asked} exists in {tz} but {wall} was chosen"
        probe += timedelta(minutes=1)
    earlier = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    assert instant <= earlier, f"{instant} is the second occurrence of {wall} in {tz}"


def period_of(schedule: Schedule, instant: datetime, tz: ZoneInfo) -> tuple[int, ...]:
    local = instant.astimezone(tz).date()
    if schedule.frequency == "daily":
        return (local.toordinal(),)
    if schedule.frequency == "weekly":
        return (local.toordinal() - local.weekday(),)  # the week's Monday
    return (local.year, local.month)


def consecutive(a: tuple[int, ...], b: tuple[int, ...], schedule: Schedule) -> bool:
    if schedule.frequency == "daily":
        return b[0] - a[0] == 1
    if schedule.frequency == "weekly":
        return b[0] - a[0] == 7
    return (b[0] * 12 + b[1]) - (a[0] * 12 + a[1]) == 1


def walk(schedule: Schedule, tz: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    dues, after = [], start
    for _ in range(count):
        after = next_due(schedule, tz, after)
        dues.append(after)
    return dues


def check_sequence(schedule: Schedule, tz: ZoneInfo, start: datetime, count: int) -> None:
    dues = walk(schedule, tz, start, count)
    assert dues[0] > start
    for previous, current in zip(dues, dues[1:], strict=False):
        assert current > previous, f"not increasing: {previous} then {current} in {tz}"
        assert consecutive(period_of(schedule, previous, tz), period_of(schedule, current, tz),
                           schedule), f"{previous} then {current}: not one per period"  # fmt: skip
        # latest_due agrees: each due is the last one at or before itself, and just before
        # it the previous one was.
        assert latest_due(schedule, tz, current) == current
        assert latest_due(schedule, tz, current - timedelta(microseconds=1)) == previous
    for instant in dues:
        local = instant.astimezone(tz).date()
        if schedule.frequency == "weekly":
            assert local.weekday() == schedule.weekday
        if schedule.frequency == "monthly":
            assert schedule.day is not None
            last = calendar.monthrange(local.year, local.month)[1]
            assert local.day == min(schedule.day, last), f"{instant}: not clamped to the month"
        check_instant(instant, local, schedule.at, tz)


# -- every transition, exhaustively ----------------------------------------------------------


def test_the_zones_have_the_transitions_they_are_known_for() -> None:
    assert len(transitions("America/New_York")) == 32
    assert len(transitions("Europe/London")) == 32
    assert len(transitions("Australia/Lord_Howe")) == 32
    for name in ("Asia/Kathmandu", "Africa/Johannesburg", "UTC"):
        assert transitions(name) == ()
    # Lord Howe moves by 30 minutes, Kathmandu sits at +05:45.
    first = transitions("Australia/Lord_Howe")[0]
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    before, after = (first + timedelta(minutes=m) for m in (-1, 1))
    offset_before = before.astimezone(lord_howe).utcoffset()
    offset_after = after.astimezone(lord_howe).utcoffset()
    assert offset_before is not None and offset_after is not None  # an aware datetime
    shift = abs(offset_after - offset_before)
    assert shift == timedelta(minutes=30)
    assert ZoneInfo("Asia/Kathmandu").utcoffset(datetime(2030, 1, 1)) == timedelta(
        hours=5, minutes=45
    )


@pytest.mark.parametrize(
    "name", [z for z in ZONES if z not in ("Asia/Kathmandu", "Africa/Johannesburg", "UTC")]
)
def test_a_daily_digest_at_every_quarter_hour_around_every_transition(name: str) -> None:
    tz = zone(name)
    for moment in transitions(name):
        wall = moment.astimezone(tz)
        for quarter in range(-12, 13):  # three hours either side, every 15 minutes
            at = (wall + timedelta(minutes=15 * quarter)).time().replace(second=0)
            schedule = Schedule("daily", at.hour, at.minute)
            check_sequence(schedule, tz, moment - timedelta(days=3), 7)


def test_spring_forward_is_sent_at_the_first_valid_minute_and_fall_back_once() -> None:
    new_york = zone("America/New_York")
    spring = next_due(parse_schedule("daily 02:30"), new_york, datetime(2025, 3, 8, 12, tzinfo=UTC))
    assert spring.astimezone(new_york).isoformat() == "2025-03-09T03:00:00-04:00"
    fall = walk(parse_schedule("daily 01:30"), new_york, datetime(2025, 11, 1, 12, tzinfo=UTC), 2)
    assert [d.astimezone(new_york).isoformat() for d in fall] == [
        "2025-11-02T01:30:00-04:00",  # the first 01:30, in daylight time; not the second
        "2025-11-03T01:30:00-05:00",
    ]
    lord_howe = zone("Australia/Lord_Howe")
    half = next_due(parse_schedule("daily 02:15"), lord_howe, datetime(2025, 10, 4, tzinfo=UTC))
    assert half.astimezone(lord_howe).isoformat() == "2025-10-05T02:30:00+11:00"


def test_monthly_on_the_31st_clamps_and_returns_to_the_31st() -> None:
    utc = zone("UTC")
    dues = walk(parse_schedule("monthly 31 09:00"), utc, datetime(2024, 1, 1, tzinfo=UTC), 6)
    assert [d.date().isoformat() for d in dues] == [
        "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30",
    ]  # fmt: skip


def test_a_due_instant_for_each_date_is_within_the_day_asked() -> None:
    tz = zone("Europe/London")
    instant = due_on(date(2030, 3, 31), time(1, 30), tz)  # 01:00 -> 02:00 that day
    assert instant.astimezone(tz).isoformat() == "2030-03-31T02:00:00+01:00"


# -- hypothesis: any schedule, any start near any transition ---------------------------------

schedules = st.one_of(
    st.builds(Schedule, st.just("daily"), st.integers(0, 23), st.integers(0, 59)),
    st.builds(
        Schedule, st.just("weekly"), st.integers(0, 23), st.integers(0, 59),
        weekday=st.integers(0, 6),
    ),
    st.builds(
        Schedule, st.just("monthly"), st.integers(0, 23), st.integers(0, 59),
        day=st.integers(1, 31),
    ),
)  # fmt: skip


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant shortly before one of its transitions (any instant in the
    range for the zones without DST)."""
    name = draw(st.sampled_from(ZONES))
    moments = transitions(name)
    if moments:
        moment = draw(st.sampled_from(moments))
        start = moment - timedelta(minutes=draw(st.integers(0, 40 * 24 * 60)))
    else:
        start = START + timedelta(minutes=draw(st.integers(0, 16 * 365 * 24 * 60)))
    return name, start


@settings(max_examples=3000, deadline=None)
@given(schedule=schedules, where=starts())
def test_any_schedule_is_increasing_one_per_period_and_never_at_a_missing_time(
    schedule: Schedule, where: tuple[str, datetime]
) -> None:
    name, start = where
    count = {"daily": 45, "weekly": 8, "monthly": 4}[schedule.frequency]
    check_sequence(schedule, zone(name), start, count)


@settings(max_examples=500, deadline=None)
@given(schedule=schedules)
def test_a_schedule_prints_as_it_parses(schedule: Schedule) -> None:
    assert parse_schedule(str(schedule)) == schedule


# -- parsing and refusal ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["daily", "daily 9", "daily 24:00", "daily 09:60", "weekly 09:00", "weekly xyz 09:00",
     "monthly 0 09:00", "monthly 32 09:00", "hourly 09:00", "daily 09:00 extra", "", None,
     "daily ０９:００", "monthly 1e1 09:00", "x" * 1000],
)  # fmt: skip
def test_a_malformed_schedule_is_refused_with_the_forms_it_accepts(text: object) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_schedules_are_read_loosely_and_written_canonically() -> None:
    assert str(parse_schedule(" Weekly  Monday 9:05 ")) == "weekly mon 09:05"
    assert str(parse_schedule("monthly 31 23:59")) == "monthly 31 23:59"


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "x" * 500, 3]
)
def test_an_unknown_timezone_is_refused_by_name(name: object) -> None:
    with pytest.raises(ScheduleError, match="timezone"):
        zone(name)
