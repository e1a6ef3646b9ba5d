"""When a digest is due: a fixed calendar in a timezone, computed with zoneinfo.

Cron libraries are not used for this on purpose: croniter and periodiq both fire twice in
a fall-back hour, skip a nonexistent spring-forward time or fire it late, and skip day 31
in 30-day months (../shared/research/digests.md). Here each calendar date of a schedule
gives exactly one instant:

- a local time that does not exist on that date (spring forward) is due at the first valid
  minute after it (02:30 in New York on the spring-forward day: 03:00);
- a local time that happens twice (fall back) is due once, at its first occurrence;
- monthly on the 29th to 31st falls on the last day of a shorter month, and the next month
  returns to the day asked.

Instants are aware `datetime`s in UTC. Nothing here reads a clock: callers pass `after` or
`now`, so the scheduler can be tested with an injected clock.
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

__all__ = [
    "FREQUENCIES",
    "WEEKDAYS",
    "Schedule",
    "ScheduleError",
    "due_on",
    "latest_due",
    "next_due",
    "parse_schedule",
    "zone",
]

FREQUENCIES = ("daily", "weekly", "monthly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_WEEKDAYS = tuple(calendar.day_name[i].lower() for i in range(7))
#: Longest run of nonexistent local minutes searched for (the widest gaps in the tz
#: database are a day: Samoa skipped 30 December 2011).
_MAX_GAP_MINUTES = 25 * 60
#: Longest text accepted as a schedule or a timezone name.
_MAX_TEXT = 64


class ScheduleError(ValueError):
    """A schedule or timezone Herald cannot use; the message says what is expected."""


@dataclass(frozen=True)
class Schedule:
    """`daily 09:00`, `weekly mon 09:00` or `monthly 31 09:00` (local time, 24-hour)."""

    frequency: str
    hour: int
    minute: int
    weekday: int | None = None  # 0 = Monday, weekly only
    day: int | None = None  # 1..31, monthly only

    def __str__(self) -> str:
        at = f"{self.hour:02d}:{self.minute:02d}"
        if self.frequency == "weekly":
            assert self.weekday is not None
            return f"weekly {WEEKDAYS[self.weekday]} {at}"
        if self.frequency == "monthly":
            return f"monthly {self.day} {at}"
        return f"daily {at}"

    @property
    def at(self) -> time:
        return time(self.hour, self.minute)


def parse_schedule(text: object) -> Schedule:
    """`daily HH:MM`, `weekly DAY HH:MM` (mon..sun) or `monthly D HH:MM` (1..31)."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise ScheduleError(f"schedule must be text such as 'daily 09:00', not {text!r:.80}")
    words = text.strip().lower().split()
    usage = "use 'daily 09:00', 'weekly mon 09:00' or 'monthly 31 09:00'"
    if not words or words[0] not in FREQUENCIES:
        raise ScheduleError(f"schedule {text!r}: {usage}")
    frequency = words[0]
    expected = {"daily": 2, "weekly": 3, "monthly": 3}[frequency]
    if len(words) != expected:
        raise ScheduleError(f"schedule {text!r}: {usage}")
    hour, minute = _clock(words[-1], text)
    if frequency == "weekly":
        return Schedule(frequency, hour, minute, weekday=_weekday(words[1], text))
    if frequency == "monthly":
        day = words[1]
        if not (_digits(day) and len(day) <= 2 and 1 <= int(day) <= 31):
            raise ScheduleError(f"schedule {text!r}: the day of the month must be 1 to 31")
        return Schedule(frequency, hour, minute, day=int(day))
    return Schedule(frequency, hour, minute)


def _clock(word: str, text: str) -> tuple[int, int]:
    hours, sep, minutes = word.partition(":")
    if (
        sep
        and _digits(hours)
        and _digits(minutes)
        and 1 <= len(hours) <= 2
        and len(minutes) == 2
        and int(hours) < 24
        and int(minutes) < 60
    ):
        return int(hours), int(minutes)
    raise ScheduleError(f"schedule {text!r}: the time must be HH:MM, 00:00 to 23:59")


def _digits(word: str) -> bool:
    """ASCII digits only (str.isdigit also takes fullwidth and other scripts' digits)."""
    return word.isascii() and word.isdigit()


def _weekday(word: str, text: str) -> int:
    for names in (WEEKDAYS, _LONG_WEEKDAYS):
        if word in names:
            return names.index(word)
    raise ScheduleError(f"schedule {text!r}: the day must be one of {', '.join(WEEKDAYS)}")


@functools.lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=512)
def zone(name: object) -> zoneinfo.ZoneInfo:
    """The IANA timezone `name` (`Europe/London`, `UTC`), or ScheduleError naming it."""
    if not isinstance(name, str) or not name or len(name) > _MAX_TEXT:
        raise ScheduleError(
            f"timezone must be an IANA name such as 'Europe/London', not {name!r:.80}"
        )
    if name not in _known_zones():
        raise ScheduleError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/London' or 'UTC'"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r}") from None


# -- the calendar -----------------------------------------------------------------------------


def _month_occurrence(schedule: Schedule, year: int, month: int) -> date:
    assert schedule.day is not None
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(schedule.day, last))


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def _dates(schedule: Schedule, start: date, step: int) -> Iterator[date]:
    """The schedule's dates from `start` on (step 1) or back from it (step -1), `start`
    included when it is one."""
    if schedule.frequency == "daily":
        day = start
        while True:
            yield day
            day += timedelta(days=step)
    elif schedule.frequency == "weekly":
        assert schedule.weekday is not None
        shift = (schedule.weekday - start.weekday()) % 7
        day = start + timedelta(days=shift) if step > 0 else start - timedelta(days=(7 - shift) % 7)
        while True:
            yield day
            day += timedelta(days=7 * step)
    else:
        year, month = start.year, start.month
        first = _month_occurrence(schedule, year, month)
        if (step > 0 and first < start) or (step < 0 and first > start):
            year, month = _add_months(year, month, step)
        while True:
            yield _month_occurrence(schedule, year, month)
            year, month = _add_months(year, month, step)


def due_on(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant (UTC) of local time `at` on `day` in `tz`: the first valid minute after it
    when it does not exist, its first occurrence when it happens twice."""
    wall = datetime.combine(day, at)
    for _ in range(_MAX_GAP_MINUTES):
        instant = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first occurrence
        if instant.astimezone(tz).replace(tzinfo=None) == wall:
            return instant
        wall += timedelta(minutes=1)  # inside a spring-forward gap: try the next minute
    raise ScheduleError(f"no valid local time after {datetime.combine(day, at)} in {tz}")


def next_due(schedule: Schedule, tz: tzinfo, after: datetime) -> datetime:
    """The schedule's first due instant strictly after `after` (aware)."""
    local = after.astimezone(tz).date() - timedelta(days=1)  # a gap may push a date forward
    for day in _dates(schedule, local, 1):
        instant = due_on(day, schedule.at, tz)
        if instant > after:
            return instant
    raise AssertionError("unreachable: the calendar is infinite")


def latest_due(schedule: Schedule, tz: tzinfo, now: datetime) -> datetime:
    """The schedule's last due instant at or before `now` (aware)."""
    local = now.astimezone(tz).date() + timedelta(days=1)
    for day in _dates(schedule, local, -1):
        instant = due_on(day, schedule.at, tz)
        if instant <= now:
            return instant
    raise AssertionError("unreachable: the calendar is infinite")
